"""Recorded events straight into Kafka, and the task records the streams app published.

For the streams benchmark and the restart / scale-out / duplicate tests: the events go in as
the bridge would send them (packs of schemas/pack.v2.json, murmur2 partitions, bridge/packs.py
itself), and the expected records come from the engine itself (the only implementation of the
rules), so "exact" means "what the engine gives for that set of events".
"""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Producer

from bridge.envelope import TASK, WORKER, Entry, Enveloper
from bridge.packs import Packer
from streams.config import Settings
from streams.connections import librdkafka_options, kafka_python_options
from streams.engine import Tracker, parse_event


def _producer(settings: Settings) -> Producer:
    return Producer({**librdkafka_options(settings), "partitioner": "murmur2_random", "linger.ms": 20})


FLUSH_EVENTS = 4000  # events per bridge flush under load (50 task.multi messages of ~80 events)


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, key=key, value=value)
            else:
                producer.produce(topic, value=value, partition=partition)
            return
        except BufferError:  # librdkafka's queue is full: let deliveries drain it
            producer.poll(0.1)


def produce_events(settings: Settings, events: list[dict], copies: int = 1, flush_events: int = FLUSH_EVENTS) -> int:
    """Every task event of ``events`` onto the task-events topic, in packs as the bridge writes
    them under load (flushes of ``flush_events`` events: one pack per partition per flush, with the
    worker-events packs of their signs of life). ``copies`` > 1 delivers every event again, packed
    differently (smaller flushes, as a redelivery after a bridge restart). Returns the events sent."""
    enveloper = Enveloper(settings.cluster, "backlog")
    packer = Packer(settings.cluster, "backlog")
    topics = {TASK: settings.topic_task_events, WORKER: settings.topic_worker_events}
    producer = _producer(settings)
    # Received "as sent" (receive time = the event's timestamp): a redelivered copy then carries
    # the receive time of the first, and expected_task_records can give the same times.
    bodies = [(orjson.dumps({k: v for k, v in e.items() if k != "local_received"}), e["timestamp"])
              for e in events if e["type"].startswith("task-")]  # fmt: skip
    sent = 0
    for copy in range(copies):
        size = max(1, flush_events // (1 + 3 * copy))
        for start in range(0, len(bodies), size):
            entries = []
            for body, received in bodies[start : start + size]:
                (entry,) = enveloper.wrap(body, "task.multi", received)
                assert isinstance(entry, Entry) and entry.kind == TASK, entry
                entries.append(entry)
            # read_until as a live bridge would have it: everything up to the newest receive time
            packs, dead = packer.pack(entries, bodies[min(start + size, len(bodies)) - 1][1], lambda kind: settings.topic_partitions)
            assert not dead, dead
            for pack in packs:
                _produce(producer, topics[pack.kind], None, pack.value, pack.partition)
            sent += len(entries)
    if producer.flush(60):
        raise RuntimeError("Kafka did not take the backlog")
    return sent


def produce_event_records(settings: Settings, events: list[dict], topic: str) -> int:
    """Every task event of ``events`` as its own Kafka record (a v1 envelope keyed by task uuid),
    as the bridge wrote them before packs: the per-record baselines of bench-streams read these."""
    producer = _producer(settings)
    sent = 0
    for seq, e in enumerate(events, 1):
        if not e["type"].startswith("task-"):
            continue
        body = {k: v for k, v in e.items() if k != "local_received"}
        envelope = {"v": 1, "cluster": settings.cluster, "bridge": "backlog", "seq": seq, "received_at": body["timestamp"],
                    "routing_key": "task.multi", "event": body}  # fmt: skip
        _produce(producer, topic, body["uuid"].encode(), orjson.dumps(envelope))
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
    """What the engine gives for the task events of ``events``, received as produce_events stamps them."""
    tracker = Tracker()
    for event in events:
        if event["type"].startswith("task-"):
            body = {k: v for k, v in event.items() if k != "local_received"}
            tracker.add(parse_event(body, settings.cluster, body["timestamp"]))
    return {record["uuid"]: orjson.loads(orjson.dumps(record)) for record in tracker.task_records()}


class TaskStateReader:
    """Reads the task-states topic as it grows; keeps the fullest record of each task of one cluster."""

    def __init__(self, settings: Settings):
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            **kafka_python_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
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


def read_topic(settings: Settings, topic: str, timeout: float = 60.0) -> list[dict]:
    """Every record ``topic`` holds now (up to each partition's high watermark), decoded.

    librdkafka's consumer: kafka-python's skipped records of large batches on Tansu."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.tansu import fetch_highwaters

    tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    left = {tp.partition: end for tp, end in fetch_highwaters(settings.kafka_bootstrap.split(","), tps).items() if end}
    consumer = Consumer({**librdkafka_options(settings), "group.id": "read-topic", "enable.auto.commit": False})
    out: list[dict] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(left)} not read to their end within {timeout}s")
            for message in consumer.consume(5000, 0.5):
                if message.error() or message.partition() not in left:
                    continue
                out.append(orjson.loads(message.value()))
                if message.offset() + 1 >= left[message.partition()]:
                    del left[message.partition()]
        return out
    finally:
        consumer.close()


def wait_for_record(settings: Settings, topic: str, match, timeout: float, alive=lambda: None) -> tuple[dict, float]:
    """The first record of ``topic`` (from the start) that ``match``es, and when it was read.

    librdkafka's consumer: a shared test stack's state topics hold hundreds of thousands of
    records, which kafka-python reads too slowly for a wait of a few heartbeats."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        **librdkafka_options(settings), "group.id": "wait-for-record", "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.2):
                if message.error():
                    continue
                record = orjson.loads(message.value())
                if match(record):
                    return record, time.time()
            alive()
        raise TimeoutError(f"no matching record on {topic} within {timeout}s")
    finally:
        consumer.close()
