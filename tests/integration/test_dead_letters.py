"""Bad input through the real broker: every malformed body lands on the dead-letter topic with its
reason (bridge stage or streams stage), nothing crashes, and the good events around it arrive."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid as uuidlib

import orjson
from celery.events.event import get_exchange
from kafka import KafkaConsumer
from kombu import Connection

from demo.pipeline import Pipeline, wait_for_tasks


def publish_raw(url: str, bodies: list[tuple[str, bytes]]) -> None:
    with Connection(url) as conn:
        exchange = get_exchange(conn)
        with conn.Producer(exchange=exchange) as producer:
            for routing_key, body in bodies:
                producer.publish(body, routing_key=routing_key, content_type="application/json", content_encoding="utf-8")


def dead_letters(settings, want: int, timeout: float = 60.0) -> list[dict]:
    consumer = KafkaConsumer(
        settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest", consumer_timeout_ms=1000,
    )  # fmt: skip
    letters: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(letters) < want:
            for message in consumer:
                letter = orjson.loads(message.value)
                text = json.dumps(letter)
                if settings.cluster in text:
                    letters.append(letter)
    finally:
        consumer.close()
    return letters


def test_malformed_bodies_are_dead_lettered_and_good_events_pass(stack, clickhouse_client):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = dataclasses.replace(pipeline.settings, cluster=f"{base.cluster}-dlq-{pipeline.run_id}", app_id=f"{base.app_id}-dlq")
    pipeline.settings = settings
    good = str(uuidlib.uuid4())
    now = time.time()
    c = settings.cluster  # carried inside bodies so this test finds its own letters

    def ev(type_, **fields):
        return {"type": type_, "uuid": good, "hostname": "w@h", "pid": 1, "clock": fields.pop("clock"), "timestamp": now, **fields}

    bodies = [
        ("task.sent", f"not json at all {c}".encode()),
        ("task.multi", json.dumps([ev("task-received", clock=1, name="t", retries=0), {"type": "task-started", "note": c}]).encode()),
        ("task.weird", json.dumps({"type": "task-party", "uuid": c, "timestamp": now}).encode()),
        ("task.multi", json.dumps([ev("task-started", clock=2), ev("task-succeeded", clock=3, runtime=0.1, result="1")]).encode()),
        # Passes the bridge (a task event with a uuid) but not the engine: wrong field type.
        ("task.multi", json.dumps([{"type": "task-received", "uuid": f"bad-{c}", "timestamp": now, "retries": "two"}]).encode()),
        ("task.multi", ("[" + "9" * 30 + f', "{c}"]').encode()),  # an integer beyond 64 bits
        ("task.sent", b"\xff\xfe" + c.encode()),  # not UTF-8
    ]
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        publish_raw(settings.broker_url, bodies)
        rows = wait_for_tasks(clickhouse_client, settings, [good], pipeline, timeout=90)
        letters = dead_letters(settings, want=7)
        pipeline.check_alive()  # nothing crashed
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()

    assert rows[good]["state"] == "SUCCEEDED" and rows[good]["events_count"] == 3
    reasons = sorted((letter["stage"], letter["reason"]) for letter in letters)
    stages = [stage for stage, _ in reasons]
    # bridge: not JSON, not UTF-8, a number and a string where events belong, no uuid;
    # streams: a wrong field type, an unknown task-* type (the bridge forwards every task-*/worker-*
    # event untouched, the engine decides what it understands).
    assert stages.count("bridge") == 5 and stages.count("streams") == 2, reasons
    text = " ".join(reason for _, reason in reasons)
    for expected in ("not JSON", "task event without a 'uuid'", "unknown event type 'task-party'", "field 'retries' has type str"):
        assert expected in text, (expected, reasons)
    streams_letter = next(letter for letter in letters if letter["stage"] == "streams")
    assert set(streams_letter["source"]) == {"topic", "partition", "offset"}
    assert any("raw_b64" in letter for letter in letters)  # the non-UTF-8 body is kept as bytes
