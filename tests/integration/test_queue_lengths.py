"""Queue lengths read from real brokers: a queue filled to a known depth is read back exactly.

RabbitMQ (passive declare: message_count, consumer_count) and Redis (the list and Celery's
priority sub-queues), discovery from a real Celery worker, and the whole route bridge -> Kafka ->
sink -> ClickHouse -> `streams report`. Every queue and key created here is deleted.
"""

from __future__ import annotations

import sys
import time
import urllib.request
import uuid

import pytest
import redis as redis_client
from kombu import Connection, Exchange, Queue

from bridge.queues import QueueSampler
from devstack.pipeline import Pipeline, PipelineError, delete_queues
from devstack import services
from devstack import dev_settings
from streams.report import run_report
from streams.clickhouse import connect

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"
PRIORITY_SEP = "\x06\x16"  # kombu.transport.redis.Channel.sep


def fill(url: str, name: str, depth: int, priorities: bool = False) -> None:
    """Publish ``depth`` messages to a new queue ``name`` (priorities 0..9 when asked)."""
    arguments = {"x-max-priority": 9} if priorities and url.startswith("amqp") else None
    queue = Queue(name, Exchange(name, "direct"), name, queue_arguments=arguments)
    with Connection(url) as conn:
        queue(conn.channel()).declare()
        with conn.Producer() as producer:
            for i in range(depth):
                producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, priority=i % 10 if priorities else None)


def delete(url: str, *names: str) -> None:
    delete_queues(url, list(names))
    if url.startswith("redis"):
        client = redis_client.Redis.from_url(url)
        for name in names:
            assert not client.keys(f"*{name}*"), client.keys(f"*{name}*")


def sample(url: str, *queues: str, discovery: bool = False, cluster: str = "ql") -> dict[str, dict]:
    from streams.config import Settings

    settings = dev_settings(environ={}, broker_url=url, cluster=cluster, bridge_queues=",".join(queues), bridge_queue_discovery=discovery)
    with Connection(url) as conn:
        records = QueueSampler(settings, "test", lambda records: None).sample(conn)
    return {r["queue"]: r for r in records}


@pytest.fixture
def names():
    run = uuid.uuid4().hex[:8]
    return [f"celery-monitor-ql-{run}-{i}" for i in range(3)]


def test_rabbitmq_depth_and_consumers_read_back_exactly(names):
    full, empty, missing = names
    try:
        fill(RABBIT, full, 1234)
        fill(RABBIT, empty, 0)
        got = sample(RABBIT, full, empty, missing)
        assert (got[full]["present"], got[full]["messages"], got[full]["consumers"]) == (True, 1234, 0)
        assert (got[empty]["present"], got[empty]["messages"], got[empty]["consumers"]) == (True, 0, 0)
        assert (got[missing]["present"], got[missing]["messages"]) == (False, 0)  # a passive declare creates nothing
        with Connection(RABBIT) as conn:
            with conn.Consumer(Queue(empty, Exchange(empty, "direct"), empty), callbacks=[lambda body, message: None]):
                assert sample(RABBIT, empty)[empty]["consumers"] == 1
            with pytest.raises(conn.channel_errors):
                conn.channel().queue_declare(queue=missing, passive=True)  # still not there
    finally:
        delete(RABBIT, full, empty)


def test_redis_depth_includes_the_priority_sub_queues(names):
    plain, prioritised, missing = names
    client = redis_client.Redis.from_url(REDIS)
    try:
        fill(REDIS, plain, 321)
        fill(REDIS, prioritised, 500, priorities=True)
        lists = {key.decode(): client.llen(key) for key in client.keys(f"{prioritised}*") if not key.startswith(b"_kombu")}
        assert sorted(lists) == sorted([prioritised] + [f"{prioritised}{PRIORITY_SEP}{p}" for p in (3, 6, 9)]), lists
        assert sum(lists.values()) == 500 and client.llen(prioritised) < 500  # the sub-queues hold most of it
        got = sample(REDIS, plain, prioritised, missing)
        assert (got[plain]["messages"], got[prioritised]["messages"]) == (321, 500)
        assert got[plain]["consumers"] is None  # Redis cannot tell
        assert (got[missing]["present"], got[missing]["messages"]) == (False, 0)
        assert "celery-monitor.bridge.ql" not in got  # no bridge queue on Redis (pub/sub)
    finally:
        delete(REDIS, plain, prioritised)


def test_discovery_finds_a_real_workers_queues_and_pool(stack, names, tmp_path):
    first, second, _ = names
    pipeline = Pipeline(stack["settings"].replace(broker_url=RABBIT), tmp_path / "logs")
    argv = [
        sys.executable, "-m", "celery", "-A", "demo.tasks", "worker", "-c", "2", "-Q", f"{first},{second}",
        "-n", f"ql-{pipeline.run_id}@%h", "--without-gossip", "--without-mingle", "-l", "warning",
    ]  # fmt: skip
    worker = pipeline._proc("celery-worker", argv)
    try:
        deadline = time.monotonic() + 60
        while True:
            got = sample(RABBIT, discovery=True)
            if first in got and got[first]["consumers"]:
                break
            assert worker.alive(), worker.tail()
            assert time.monotonic() < deadline, f"worker never reported its queues: {got}"
        for name in (first, second):
            assert (got[name]["workers"], got[name]["processes"], got[name]["consumers"], got[name]["messages"]) == (1, 2, 1, 0)
    finally:
        pipeline.stop()
        delete(RABBIT, first, second)


def test_samples_reach_clickhouse_and_the_report(stack, names, tmp_path):
    queue, _, _ = names
    run = uuid.uuid4().hex[:6]
    metrics_addr = f"127.0.0.1:{services.free_port()}"
    settings = stack["settings"].replace(broker_url=RABBIT, cluster=f"ql-{run}", bridge_queues=queue, bridge_queue_sample_seconds=1.0,
        bridge_queue_discovery=False, bridge_metrics_addr=metrics_addr, sink_group=f"ql-sink-{run}",
    )  # fmt: skip
    pipeline = Pipeline(settings, tmp_path / "logs")
    client = connect(settings)
    try:
        fill(RABBIT, queue, 777)
        pipeline.start_bridge()
        pipeline._proc("sink", [sys.executable, "-m", "streams", "sink"])
        query = f"SELECT messages, role FROM {settings.clickhouse_database}.queue_lengths FINAL WHERE cluster = %(c)s ORDER BY queue"
        deadline = time.monotonic() + 60
        while True:  # a task-queue and a bridge-queue sample: keyed apart, they may arrive apart
            rows = client.execute(query, {"c": settings.cluster})
            if {role for _, role in rows} == {"task", "bridge"}:
                break
            pipeline.check_alive()
            if time.monotonic() > deadline:
                raise PipelineError(f"no queue-length rows in ClickHouse: {rows}")
            time.sleep(0.5)
        assert (777, "task") in rows and any(role == "bridge" for _, role in rows), rows

        def execute(sql, params):
            result, types = client.execute(sql, params, with_column_types=True)
            return [n for n, _ in types], result

        (answer,) = run_report(execute, settings.clickhouse_database, {"cluster": settings.cluster, "since": 0}, ("queue_lengths",))
        by_queue = {row[2]: dict(zip(answer.columns, row)) for row in answer.rows}
        assert by_queue[queue]["messages_max"] == 777 and by_queue[queue]["role"] == "task"
        metrics = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
        assert f'bridge_queue_messages{{cluster="{settings.cluster}"}}' in metrics
        assert "bridge_queue_sample_seconds" in metrics
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        delete(RABBIT, queue)
        client.disconnect()
