"""Bad input through the real broker: every malformed body lands on the dead-letter topic with its
reason (bridge stage or streams stage), nothing crashes, and the good events around it arrive."""

from __future__ import annotations

import json
import time
import uuid as uuidlib

import orjson
from celery.events.event import get_exchange
from kafka import KafkaConsumer
from kombu import Connection

from devstack.pipeline import Pipeline, wait_for_tasks


def publish_raw(settings, bodies: list[tuple[str, bytes]]) -> None:
    """Publish (routing key, body) pairs as a Celery worker would: on the broker's event exchange."""
    with Connection(settings.broker_url) as conn:
        exchange = get_exchange(conn, settings.bridge_event_exchange)
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
    settings = pipeline.settings.replace(cluster=f"{base.cluster}-dlq-{pipeline.run_id}", app_id=f"{base.app_id}-dlq")
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
        publish_raw(settings, bodies)
        rows = wait_for_tasks(clickhouse_client, settings, [good], pipeline, timeout=90)
        letters = dead_letters(settings, want=6)
        pipeline.check_alive()  # nothing crashed
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()

    assert rows[good]["state"] == "SUCCEEDED" and rows[good]["events_count"] == 3
    reasons = sorted((letter["stage"], letter["reason"]) for letter in letters)
    stages = [stage for stage, _ in reasons]
    # bridge: not JSON, not UTF-8, a number and a string where events belong, no uuid;
    # streams: a wrong field type. A well-formed task-* type the rules do not know (task-party)
    # is kept and counted, not a dead letter: it is in ClickHouse's events.
    assert stages.count("bridge") == 5 and stages.count("streams") == 1, reasons
    text = " ".join(reason for _, reason in reasons)
    for expected in ("not JSON", "task event without a 'uuid'", "field 'retries' has type str"):
        assert expected in text, (expected, reasons)
    assert "task-party" not in text
    (kept,) = clickhouse_client.execute(
        f"SELECT count() FROM {settings.clickhouse_database}.events WHERE cluster = %(c)s AND type = 'task-party'", {"c": settings.cluster}
    )[0]
    assert kept == 1
    streams_letter = next(letter for letter in letters if letter["stage"] == "streams")
    assert set(streams_letter["source"]) == {"topic", "partition", "offset"}
    assert any("raw_b64" in letter for letter in letters)  # the non-UTF-8 body is kept as bytes


HOSTILE = 10_000
UNICODE_NAMES = ("tâsk.ünïcode", "タスク.名前", "مهمة.rtl", "emoji.🚀🔥", "zwj.👩‍💻", "combining.é", "tab\tand\nnewline", "quote'\"\\")


def hostile_bodies(c: str, now: float) -> list[tuple[str, bytes]]:
    """HOSTILE bodies, each worth exactly one dead letter -- but the well-formed event of a task-*
    type the rules do not know, which is kept; every one carries the cluster name c."""
    makers = [
        lambda i: ("task.sent", f"<html>not json {i} {c}".encode()),  # not JSON
        lambda i: ("task.sent", b"\xff\xfe\xfa" + f"{i}{c}".encode()),  # not UTF-8
        # a lone surrogate is read as Celery reads it (issue 19); this event has no timestamp
        lambda i: ("task.sent", (f'{{"type": "task-sent", "uuid": "{c}-{i}", "name": "\\ud800"}}').encode()),
        lambda i: ("task.sent", ("[" * 3000 + f'"{c}"' + "]" * 3000).encode()),  # nesting beyond the parser's limit
        lambda i: ("task.sent", json.dumps({"type": "task-received", "timestamp": now, "note": f"{c}-{i}"}).encode()),  # no uuid
        lambda i: ("task.sent", json.dumps({"type": "task-party", "uuid": f"{c}-{i}", "timestamp": now}).encode()),  # unknown type: kept
        lambda i: ("task.sent", json.dumps({"type": "task-received", "uuid": f"{c}-{i}", "timestamp": now, "retries": "many"}).encode()),
        lambda i: ("task.sent", json.dumps({"type": "task-started", "uuid": f"{c}-{i}", "timestamp": f"{now}"}).encode()),  # str time
        lambda i: ("task.sent", json.dumps({"type": "task-received", "uuid": f"{c}-{i}", "timestamp": now, "retries": "x" * 50_000}).encode()),  # huge
        lambda i: ("task.multi", json.dumps([{"type": "task-failed", "uuid": f"{c}-{i}", "timestamp": now, "exception": ["not", "text"]}]).encode()),
    ]
    return [makers[i % len(makers)](i) for i in range(HOSTILE)]


def test_ten_thousand_hostile_bodies(stack, clickhouse_client):
    """10,000 malformed or hostile bodies (not JSON, not UTF-8, a lone surrogate, deep nesting, no
    uuid, unknown types, wrong types, 50 kB fields) between good events with unicode-heavy task
    names: one dead letter each with its reason, nothing crashes, every good task exact."""
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(cluster=f"{base.cluster}-hostile-{pipeline.run_id}", app_id=f"{base.app_id}-hostile")
    pipeline.settings = settings
    now = time.time()
    good = {str(uuidlib.uuid4()): name for name in UNICODE_NAMES}

    def lifecycle(uuid: str, name: str) -> list[tuple[str, bytes]]:
        common = {"uuid": uuid, "hostname": "w@h", "pid": 7, "timestamp": now}
        return [
            ("task.received", json.dumps({"type": "task-received", "clock": 1, "name": name, "args": f"('{name}',)", "retries": 0, **common}).encode()),
            ("task.started", json.dumps({"type": "task-started", "clock": 2, **common}).encode()),
            ("task.succeeded", json.dumps({"type": "task-succeeded", "clock": 3, "runtime": 0.5, "result": f"'{name}'", **common}).encode()),
        ]

    bad = hostile_bodies(settings.cluster, now)
    chunk = len(bad) // len(good)
    bodies = []
    for i, (uuid, name) in enumerate(good.items()):  # good events interleaved with the bad ones
        bodies += bad[i * chunk : (i + 1) * chunk] + lifecycle(uuid, name)
    bodies += bad[len(good) * chunk :]
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        publish_raw(settings, bodies)
        rows = wait_for_tasks(clickhouse_client, settings, list(good), pipeline, timeout=180)
        letters = dead_letters(settings, want=HOSTILE - HOSTILE // 10, timeout=180)
        pipeline.check_alive()  # nothing crashed
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()

    for uuid, name in good.items():
        assert (rows[uuid]["name"], rows[uuid]["state"], rows[uuid]["events_count"]) == (name, "SUCCEEDED", 3)
        assert rows[uuid]["result"] == f"'{name}'"
    tenth = HOSTILE // 10
    assert len(letters) == HOSTILE - tenth  # the unknown task-* type is kept
    assert all(letter["reason"] for letter in letters)
    deadline = time.monotonic() + 60
    while True:  # the kept ones reach ClickHouse's events (the sink is at-least-once: count distinct)
        (kept,) = clickhouse_client.execute(
            f"SELECT uniqExact(uuid) FROM {settings.clickhouse_database}.events WHERE cluster = %(c)s AND type = 'task-party'",
            {"c": settings.cluster},
        )[0]
        if kept == tenth or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert kept == tenth
    by_reason = {}
    for letter in letters:
        key = (letter["stage"], letter["reason"].split(":")[0][:60])
        by_reason[key] = by_reason.get(key, 0) + 1
    print("dead letters by stage and reason:", json.dumps({f"{s}: {r}": n for (s, r), n in sorted(by_reason.items())}, indent=1, ensure_ascii=False))
    assert by_reason == {
        ("bridge", "body is not JSON"): 3 * tenth,  # not JSON, not UTF-8, too deep
        ("bridge", "task event without a 'uuid' string"): tenth,
        ("streams", "field 'retries' has type str"): 2 * tenth,  # one of them 50 kB long
        ("streams", "field 'timestamp' is missing or not a number"): 2 * tenth,  # a string; the lone surrogate's event has none
        ("streams", "field 'exception' has type list"): tenth,
    }
    huge = [letter for letter in letters if "x" * 1000 in json.dumps(letter)]
    assert len(huge) == HOSTILE // 10 and all(len(json.dumps(letter)) < 200_000 for letter in huge)
