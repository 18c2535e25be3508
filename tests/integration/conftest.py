"""Session-scoped real servers, started the way `make up` starts them, on free ports.

Tansu and ClickHouse are our own instances in a temporary run directory (so a running
`make up` stack is never touched); RabbitMQ and Redis are the machine's when running, else
started here and stopped at the end.
"""

from __future__ import annotations

import uuid

import pytest

from devstack import services
from devstack.__main__ import prepare, start_brokers
from streams.config import Settings


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    ports = {"rabbitmq": 5672, "redis": 6379}
    started = start_brokers(run_dir, ports)
    kafka_port, ch_tcp, ch_http = services.free_port(), services.free_port(), services.free_port()
    tansu, argv, env = services.tansu(run_dir, kafka_port)
    tansu.start(argv, env=env, timeout=15)
    clickhouse, argv, env, ready = services.clickhouse(run_dir, ch_tcp, ch_http)
    clickhouse.start(argv, env=env, cwd=run_dir / "clickhouse", ready=ready, timeout=30)
    run = uuid.uuid4().hex[:6]
    settings = Settings.load(
        environ={},
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        clickhouse_port=ch_tcp,
        clickhouse_database="celery",
        app_id=f"celery-monitor-test-{run}",
        sink_group=f"celery-monitor-sink-test-{run}",
        session_timeout=3.0,
        cluster=f"test-{run}",
        data_dir=str(run_dir / "faust"),
    )
    prepare(settings)
    yield {"settings": settings, "run_dir": run_dir, "tansu": tansu, "clickhouse": clickhouse, "ch_http": ch_http}
    clickhouse.stop()
    tansu.stop()
    for name in started:
        services.Service(name, run_dir, ports[name]).stop()


@pytest.fixture
def clickhouse_client(stack):
    from streams.sink.clickhouse import connect

    client = connect(stack["settings"])
    yield client
    client.disconnect()
