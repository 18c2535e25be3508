"""Records the pipeline writes validate against the JSON Schemas in schemas/."""

import json
from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from bridge.envelope import DEAD, Entry, Enveloper
from bridge.packs import Packer
from streams.engine import Tracker
from streams.resources import schemas_dir

SCHEMAS = schemas_dir()


def validator(name):
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_task_and_worker_records(scenario_events):
    t = Tracker()
    for e in scenario_events:
        t.feed(e, "c")
    tasks, workers = validator("task-state.v1.json"), validator("worker-state.v1.json")
    for r in t.task_records():
        tasks.validate(r)
    for r in t.worker_records():
        workers.validate(r)


def test_packs_and_dead_letters(scenario_raw):
    pack, dead = validator("pack.v2.json"), validator("dead-letter.v1.json")
    enveloper = Enveloper("c", "b")
    entries = []
    for message in scenario_raw:
        for entry in enveloper.wrap(json.dumps(message["body"]).encode(), message["routing_key"], 1.0):
            assert isinstance(entry, Entry)
            entries.append(entry)
    packs, _ = Packer("c", "b").pack(entries, 1.0, lambda kind: 8)
    for record in packs:
        pack.validate(orjson.loads(record.value))
    for body in (b"\xff", b"[1]", b'{"type": "x"}'):
        (record,) = Enveloper("c", "b").wrap(body, "rk", 0)
        assert record.kind == DEAD
        dead.validate(orjson.loads(record.value))


def test_alerts():
    from streams.engine.alerts import FailureBursts, FailureGroups, task_alerts, worker_alerts

    alerts = validator("alert.v1.json")
    critical = {"cluster": "c", "uuid": "u", "state": "CRITICAL", "name": "t", "retries": 2, "failed_at": 3.0,
                "exception_type": "KeyError", "exception": "KeyError('k')"}  # fmt: skip
    raised = task_alerts(["RETRY", None], {**critical, "state": "CRITICAL", "worker": "w@h", "orphaned_at": 9.0, "runtime": 12.5}, 10.0)
    assert {a["alert"] for a in raised} == {"task-critical", "task-orphaned", "task-slow"}
    for alert in raised:
        alerts.validate(alert)
    bursts = FailureBursts(10.0, 2)
    bursts.add("c", "t", 1.0, "a")
    alerts.validate(bursts.add("c", "t", 2.0, "b"))
    groups = FailureGroups(10.0)
    alerts.validate(groups.add("c", "t", "KeyError", "KeyError('user <n>')", 1.0, "a", "KeyError('user 1')"))
    alerts.validate(groups.add("c", "t", "", "", 20.0, "b"))
    lost = {"cluster": "c", "hostname": "w@h", "state": "OFFLINE", "offline_reason": "heartbeat-expired",
            "offline_at": None, "expires_at": 5.0, "heartbeat_at": 1.0}  # fmt: skip
    for alert in worker_alerts({**lost, "state": "HEARTBEAT", "skew": 0.0}, {**lost, "skew": -40.0, "seen_at": 1.0}, 16):
        alerts.validate(alert)


def test_queue_length_samples():
    from types import SimpleNamespace

    from bridge.queues import QueueSampler
    from streams.config import Settings
    from tests.sqlkit import queue_samples

    schema = validator("queue-length.v1.json")
    for record in queue_samples("c", 0.0, minutes=1):
        schema.validate(record)

    class Channel:  # what a passive queue_declare answers, without a broker
        is_open = True

        def queue_declare(self, queue, passive):
            assert passive
            return SimpleNamespace(message_count=7, consumer_count=1)

    conn = SimpleNamespace(transport=SimpleNamespace(driver_type="amqp"), channel_errors=(), channel=Channel)
    settings = Settings.load(environ={}, cluster="c", bridge_queues="celery,priority", bridge_queue_discovery=False)
    records = QueueSampler(settings, "b", lambda records: None).sample(conn)
    assert [(r["queue"], r["role"], r["messages"]) for r in records] == [
        ("celery", "task", 7), ("priority", "task", 7), ("celery-monitor.bridge.c", "bridge", 7)
    ]
    for record in records:
        schema.validate(record)
