"""The bridge on RabbitMQ is at-least-once: kill -9 it under load (twice), restart it, and every
event the Celery worker emitted is in Kafka — counted as unique event identities."""

from __future__ import annotations

import signal
import threading
import time

from kafka import KafkaConsumer

from bridge.packs import partition_of
from devstack.pipeline import Pipeline
from streams.packs import decode_pack

N_TASKS = 3000
EVENTS_PER_TASK = 4  # sent, received, started, succeeded


def identities_in_kafka(settings, uuids: set[str]) -> tuple[set, int, set]:
    """(distinct event identities, events counted with duplicates, bridge ids) of ``uuids`` in the
    task-events packs; every event must sit on the partition of its uuid."""
    consumer = KafkaConsumer(
        settings.topic_task_events, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest", consumer_timeout_ms=1500, max_poll_records=5000,
    )  # fmt: skip
    seen, records, bridges = set(), 0, set()
    try:
        for message in consumer:
            pack = decode_pack(message.value)
            if pack.cluster != settings.cluster:
                continue
            assert message.key is None
            for entry in pack.entries:
                event = entry.event
                if event.get("uuid") in uuids:
                    records += 1
                    bridges.add(pack.bridge)
                    assert partition_of(event["uuid"].encode(), settings.topic_partitions) == message.partition
                    seen.add((event["type"], event["uuid"], event["hostname"], event["pid"], event["clock"], event["timestamp"]))
    finally:
        consumer.close()
    return seen, records, bridges


def wait_for_identities(settings, uuids: set[str], expected: int, timeout: float = 120.0) -> tuple[set, int, set]:
    deadline = time.monotonic() + timeout
    while True:
        seen, records, bridges = identities_in_kafka(settings, uuids)
        if len(seen) >= expected or time.monotonic() > deadline:
            return seen, records, bridges
        time.sleep(2)


def test_kill_9_bridge_under_load_loses_nothing(stack):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(cluster=f"{base.cluster}-kill-{pipeline.run_id}", bridge_batch_size=200)
    pipeline.settings = settings
    try:
        bridge = pipeline.start_bridge()
        pipeline.start_celery_worker()
        uuids: set[str] = set()

        def publish() -> None:
            for i in range(N_TASKS):
                uuids.add(pipeline.client.send_task("demo.add", args=(i, i)).id)

        publisher = threading.Thread(target=publish)
        publisher.start()  # the kills land while events flow
        for _ in range(2):
            time.sleep(1.0)
            bridge.signal(signal.SIGKILL)  # mid-batch: its unacked messages go back to the queue
            bridge.popen.wait(10)
            bridge = pipeline.start_bridge()
        publisher.join()
        seen, records, bridges = wait_for_identities(settings, uuids, N_TASKS * EVENTS_PER_TASK)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
    assert len(seen) == N_TASKS * EVENTS_PER_TASK, f"{N_TASKS * EVENTS_PER_TASK - len(seen)} events lost"
    assert len(bridges) == 3, f"the kills did not land mid-stream: events came through {bridges}"
    print(f"\nat-least-once: {len(seen)} distinct events, {records - len(seen)} duplicates after 2 x kill -9")
