"""Recorded events straight into Kafka, and the task records the streams app published.

For the streams benchmark and the restart / scale-out / duplicate tests: the events go in as
the bridge would send them (same envelope, same key, murmur2 partitions), and the expected
records come from the engine itself (the only implementation of the rules), so "exact" means
"what the engine gives for that set of events".
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Producer

from bridge.envelope import TASK, Enveloper
from streams.config import Settings
from streams.engine import Tracker


def _producer(settings: Settings) -> Producer:
    return Producer({**settings.librdkafka_options(), "partitioner": "murmur2_random", "linger.ms": 20})


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:  # librdkafka's queue is full: let deliveries drain it
            producer.poll(0.1)


def produce_events(settings: Settings, events: list[dict], copies: int = 1) -> int:
    """Every task event of ``events`` (``copies`` times each) onto the task-events topic."""
    enveloper = Enveloper(settings.cluster, "backlog")
    producer = _producer(settings)
    sent = 0
    for event in events:
        if not event["type"].startswith("task-"):
            continue
        body = orjson.dumps({k: v for k, v in event.items() if k != "local_received"})
        for record in enveloper.wrap(body, "task.multi", time.time()) * copies:
            assert record.kind == TASK, record
            _produce(producer, settings.topic_task_events, record.key, record.value)
            sent += 1
    if producer.flush(60):
        raise RuntimeError("Kafka did not take the backlog")
    return sent


def produce_task_records(settings: Settings, events: list[dict]) -> int:
    """The engine's final record of every task of ``events`` onto the task-states topic."""
    records = expected_task_records(settings, events)
    producer = _producer(settings)
    for uuid, record in records.items():
        _produce(producer, settings.topic_task_states, uuid.encode(), orjson.dumps(record))
    if producer.flush(60):
        raise RuntimeError("Kafka did not take the task records")
    return len(records)


def expected_task_records(settings: Settings, events: list[dict]) -> dict[str, dict]:
    tracker = Tracker()
    for event in events:
        if event["type"].startswith("task-"):
            tracker.feed({k: v for k, v in event.items() if k != "local_received"}, settings.cluster)
    return {record["uuid"]: orjson.loads(orjson.dumps(record)) for record in tracker.task_records()}


class TaskStateReader:
    """Reads the task-states topic as it grows; keeps the fullest record of each task of one cluster."""

    def __init__(self, settings: Settings):
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            **settings.kafka_client_options(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self.consumer.assign([TopicPartition(settings.topic_task_states, p) for p in range(settings.topic_partitions)])
        self.cluster = settings.cluster
        self.latest: dict[str, dict] = {}
        self.records = 0

    def poll(self, seconds: float = 1.0) -> None:
        batches = self.consumer.poll(timeout_ms=int(seconds * 1000), max_records=50_000)
        for messages in batches.values():
            for message in messages:
                record = orjson.loads(message.value)
                if record["cluster"] != self.cluster:
                    continue
                self.records += 1
                current = self.latest.get(record["uuid"])
                if current is None or record["events_count"] >= current["events_count"]:
                    self.latest[record["uuid"]] = record

    def wait_until_equal(self, expected: dict[str, dict], timeout: float, alive=lambda: None) -> dict[str, tuple]:
        """Poll until every expected record was published as expected; returns the differences left."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            diff = {u: (self.latest.get(u), want) for u, want in expected.items() if self.latest.get(u) != want}
            if not diff or time.monotonic() > deadline:
                return diff
            alive()

    def close(self) -> None:
        self.consumer.close()


def wait_for_record(settings: Settings, topic: str, match, timeout: float, alive=lambda: None) -> tuple[dict, float]:
    """The first record of ``topic`` (from the start) that ``match``es, and when it was read."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_options(), group_id=None, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=200).values():
                for message in messages:
                    record = orjson.loads(message.value)
                    if match(record):
                        return record, time.time()
            alive()
        raise TimeoutError(f"no matching record on {topic} within {timeout}s")
    finally:
        consumer.close()
