"""A private stack on free ports in a run directory: own Tansu and ClickHouse, the machine's
RabbitMQ/Redis (started here only when absent, and then stopped again).

Used by the integration tests, `make chaos` and `make bench-e2e`, so a running `make up` stack
is never touched and a test may stop and restart "its" ClickHouse or pause "its" Kafka.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import dev_settings, services
from .__main__ import prepare, start_brokers

if TYPE_CHECKING:
    from streams.config import Settings

BROKER_PORTS = {"rabbitmq": 5672, "redis": 6379}


@dataclass
class PrivateStack:
    settings: Settings
    run_dir: Path
    tansu: services.Service
    clickhouse: services.Service
    ch_http: int
    s3: services.S3 | None = None  # Tansu's storage when durable

    def start_tansu(self) -> None:
        """(Re)start this stack's Tansu, e.g. after a test killed it (durable only on s3 storage)."""
        _, argv, env = services.tansu(self.run_dir, int(self.settings.kafka_bootstrap.rsplit(":", 1)[1]), self.s3)
        self.tansu.start(argv, env=env, timeout=15)

    def start_clickhouse(self) -> None:
        """(Re)start this stack's ClickHouse, e.g. after a test stopped it."""
        _, argv, env, ready = services.clickhouse(self.run_dir, self.settings.clickhouse_port, self.ch_http)
        self.clickhouse.start(argv, env=env, cwd=self.run_dir / "clickhouse", ready=ready, timeout=30)

    def as_dict(self) -> dict:
        return {"settings": self.settings, "run_dir": self.run_dir, "tansu": self.tansu, "clickhouse": self.clickhouse,
                "ch_http": self.ch_http, "stack": self}  # fmt: skip


@contextmanager
def private_stack(run_dir: Path, prefix: str = "celery-monitor-test", storage: str = "memory", **overrides):
    """Tansu (``storage``: memory, or s3 on a moto server of its own) and ClickHouse on free ports."""
    started = start_brokers(run_dir, BROKER_PORTS)
    kafka_port, ch_tcp, ch_http = services.free_port(), services.free_port(), services.free_port()
    s3 = services.s3(run_dir, services.free_port()) if storage == "s3" else None
    tansu, argv, env = services.tansu(run_dir, kafka_port, s3)
    clickhouse = services.Service("clickhouse", run_dir, ch_tcp)
    try:
        if s3 is not None:
            s3.start()
        tansu.start(argv, env=env, timeout=15)
        run = uuid.uuid4().hex[:6]
        settings = dev_settings(
            environ={},
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            clickhouse_port=ch_tcp,
            clickhouse_database="celery",
            app_id=f"{prefix}-{run}",
            sink_group=f"{prefix}-sink-{run}",
            session_timeout=3.0,
            cluster=f"test-{run}",
            data_dir=str(run_dir / "faust"),
            # Endpoints on free ports too: a taken port is an error (streams/listen.py), and the
            # defaults may be held by `make up`/`make demo` or another stack on this machine.
            # Tests running two bridges or two streams workers at once give the second its own.
            **{"bridge_metrics_addr": f"127.0.0.1:{services.free_port()}",
               "streams_metrics_addr": f"127.0.0.1:{services.free_port()}",
               "ui_port": str(services.free_port()), **overrides},  # fmt: skip
        )
        stack = PrivateStack(settings, run_dir, tansu, clickhouse, ch_http, s3)
        stack.start_clickhouse()
        prepare(settings)
        yield stack
    finally:
        clickhouse.stop()
        tansu.stop()
        if s3 is not None:
            s3.service.stop()
        for name in started:
            services.Service(name, run_dir, BROKER_PORTS[name]).stop()
