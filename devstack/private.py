"""A private stack on free ports in a run directory: own Tansu and ClickHouse, the machine's
RabbitMQ/Redis (started here only when absent, and then stopped again).

Used by the integration tests, `make chaos` and `make bench-e2e`, so a running `make up` stack
is never touched and a test may stop and restart "its" ClickHouse or pause "its" Kafka.

Each stack's Celery events go through an event exchange of its own (Celery's ``event_exchange``,
the bridge's BRIDGE_EVENT_EXCHANGE; the demo app and its clients read the same setting): a bridge
bound to ``celeryev`` on the machine's RabbitMQ vhost would hear every other stack's workers (two
pytest workers, `make demo` beside the tests). Creating a vhost would reconfigure the machine's
RabbitMQ; an exchange is an ordinary client object, deleted again when the stack stops.
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
REDIS_DATABASES = 16  # Redis's default `databases`: where kombu may have left a binding set of the exchange


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
    run = uuid.uuid4().hex[:6]
    event_exchange = f"celeryev.{prefix}-{run}"
    try:
        if s3 is not None:
            s3.start()
        tansu.start(argv, env=env, timeout=15)
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
               "ui_port": str(services.free_port()), "bridge_event_exchange": event_exchange, **overrides},  # fmt: skip
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
        forget_event_exchange(event_exchange)
        for name in started:
            services.Service(name, run_dir, BROKER_PORTS[name]).stop()


def forget_event_exchange(name: str) -> None:
    """Delete what a stack's own event exchange left on the brokers: the AMQP exchange (unless a
    queue is still bound to it) and kombu's binding sets named after it in every Redis database.
    Exact names only: nothing of another exchange is touched."""
    from kombu import Connection

    try:
        with Connection(f"amqp://guest:guest@127.0.0.1:{BROKER_PORTS['rabbitmq']}//", connect_timeout=5) as conn:
            conn.default_channel.exchange_delete(exchange=name, if_unused=True)
    except Exception:  # noqa: BLE001 - never declared, or still in use: left as it is
        pass
    import redis

    for db in range(REDIS_DATABASES):
        try:
            redis.Redis(port=BROKER_PORTS["redis"], db=db, socket_timeout=5).delete(f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
        except redis.RedisError:  # a Redis with fewer databases
            break
