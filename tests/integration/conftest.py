"""Session-scoped real servers, started the way `make up` starts them, on free ports.

Tansu and ClickHouse are our own instances in a temporary run directory (so a running
`make up` stack is never touched); RabbitMQ and Redis are the machine's when running, else
started here and stopped at the end.
"""

from __future__ import annotations


import pytest

from devstack.private import private_stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with private_stack(tmp_path_factory.mktemp("run")) as private:
        yield private.as_dict()


@pytest.fixture
def clickhouse_client(stack):
    from streams.clickhouse import connect

    client = connect(stack["settings"])
    yield client
    client.disconnect()


KOMBU_DEADLINES = "_kombu.binding_deadlines"  # kombu's bookkeeping key in a Redis db the bridge subscribed on

TOPIC_FIELDS = ("topic_task_events", "topic_worker_events", "topic_task_states", "topic_worker_states",
                "topic_dead_letters", "topic_bridge_status", "topic_alerts", "topic_queue_lengths", "topic_audit")  # fmt: skip


def own_topics(settings, suffix: str):
    """``settings`` with topics of its own: a new streams app on the suite's shared topics reads
    every earlier test's events first (a backlog that grows with the suite), which a test timing
    liveness in heartbeats must not wait for."""
    return settings.replace(**{f: f"{getattr(settings, f)}-{suffix}" for f in TOPIC_FIELDS})


def forget_kombu_keys(broker_url: str) -> None:
    """Delete kombu's bookkeeping keys (binding deadlines, Celery's pidbox binding) from a Redis db
    only the test suite uses; nothing on AMQP."""
    if broker_url.startswith("redis://"):
        import redis

        redis.Redis.from_url(broker_url).delete(KOMBU_DEADLINES, "_kombu.binding.celery.pidbox")
