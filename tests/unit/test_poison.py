"""No poison pack (issue 19, item 4): whatever one event causes in the streams agents -- an
exception while folding or deriving, a state or record too large for Kafka -- that event goes to
the dead-letter topic with the reason, a metric counts it, and the rest of the pack and the
partition move on."""

import pytest

from streams import folders
from streams.engine import fold as engine_fold
from streams.metrics import StreamsMetrics
from tests.unit.test_folders import SETTINGS, Outputs, PackContext, Sent, T0, Table, TaskFolder, Topics, WorkerFolder, ev, pack


@pytest.fixture
def env():
    sent, metrics = Sent(), StreamsMetrics()
    outputs = Outputs(sent, Topics(SETTINGS, "app"), metrics)
    tasks = Table()
    return sent, metrics, TaskFolder(tasks, Table(), outputs, metrics), WorkerFolder(Table(), outputs, 2.0, 16.0, metrics), tasks


def _poisoned(metrics, reason):
    return metrics.registry.get_sample_value("streams_poison_events_total", {"topic": "t", "reason": reason}) or 0


def _items():
    return pack(ev("task-received", T0, uuid="a", name="t.a", retries=0), ev("task-received", T0, uuid="bad", name="t.bad", retries=0),
                ev("task-started", T0 + 1, uuid="a"), ev("task-started", T0 + 1, uuid="bad"),
                ev("task-succeeded", T0 + 2, uuid="a", result="1", runtime=1.0), read_until=T0 + 2)  # fmt: skip


def test_an_exception_folding_one_event_dead_letters_it_alone(env, monkeypatch):
    sent, metrics, tasks_f, _, tasks = env
    real = engine_fold.fold_task

    def fragile(state, item):
        if item.uuid == "bad" and item.kind == "started":
            raise KeyError("boom")
        return real(state, item)

    monkeypatch.setattr(folders, "fold_task", fragile)
    tasks_f.pack(_items(), PackContext("t", 0, 7, None)).write()
    (letter,) = sent.on(SETTINGS.topic_dead_letters)
    assert letter["reason"] == "folding the event failed: KeyError: 'boom'" and letter["raw"]["uuid"] == "bad"
    assert letter["raw"]["type"] == "task-started" and letter["source"] == {"topic": "t", "partition": 0, "offset": 7}
    records = {r["uuid"]: r["state"] for r in sent.on(SETTINGS.topic_task_states)}
    assert records == {"a": "SUCCEEDED", "bad": "RECEIVED"}  # the bad task's other event still counts
    assert _poisoned(metrics, "exception") == 1 and set(tasks) == {"c1/a", "c1/bad"}


def test_an_exception_deriving_a_record_dead_letters_its_events_of_the_pack(env, monkeypatch):
    sent, metrics, tasks_f, _, tasks = env
    real = folders.derive_task

    def fragile(state):
        if state["uuid"] == "bad":
            raise ValueError("cannot")
        return real(state)

    monkeypatch.setattr(folders, "derive_task", fragile)
    tasks_f.pack(_items(), PackContext("t", 0, 8, None)).write()
    letters = sent.on(SETTINGS.topic_dead_letters)
    assert [(l["raw"]["uuid"], l["raw"]["type"]) for l in letters] == [("bad", "task-received"), ("bad", "task-started")]
    assert {l["reason"] for l in letters} == {"deriving the task's record failed: ValueError: cannot"}
    assert {r["uuid"] for r in sent.on(SETTINGS.topic_task_states)} == {"a"}
    assert set(tasks) == {"c1/a"} and _poisoned(metrics, "exception") == 2


def test_a_state_too_large_for_kafka_is_not_written_its_events_dead_lettered(env, monkeypatch):
    sent, metrics, tasks_f, _, tasks = env
    monkeypatch.setattr(folders, "MAX_VALUE_BYTES", 20_000)
    items = pack(ev("task-received", T0, uuid="a", name="t.a", retries=0),
                 ev("task-received", T0, uuid="huge", name="t.huge", args="x" * 30_000, retries=0), read_until=T0)  # fmt: skip
    tasks_f.pack(items, PackContext("t", 0, 9, None)).write()
    (letter,) = sent.on(SETTINGS.topic_dead_letters)
    assert letter["raw"]["uuid"] == "huge" and "would pass 20,000 bytes" in letter["reason"]
    assert {r["uuid"] for r in sent.on(SETTINGS.topic_task_states)} == {"a"}
    assert set(tasks) == {"c1/a"} and _poisoned(metrics, "too-large") == 1
    # the partition moves on: the next pack folds as usual
    tasks_f.pack(pack(ev("task-started", T0 + 1, uuid="a"), read_until=T0 + 1), PackContext("t", 0, 10, None)).write()
    assert sent.on(SETTINGS.topic_task_states)[-1]["state"] == "STARTED"


def test_a_worker_event_whose_fold_fails_is_dead_lettered(env, monkeypatch):
    sent, metrics, _, workers_f, _ = env

    def broken(state, item):
        raise RuntimeError("nope")

    monkeypatch.setattr(folders, "fold_worker", broken)
    workers_f.pack(pack(ev("worker-heartbeat", T0, freq=2.0), read_until=T0), PackContext("t", 0, 11, None)).write()
    (letter,) = sent.on(SETTINGS.topic_dead_letters)
    assert letter["reason"] == "folding the event failed: RuntimeError: nope" and _poisoned(metrics, "exception") == 1


def _dead_letter_alerts(sent):
    from tests.unit.test_schemas import validator

    alerts = [a for a in sent.on(SETTINGS.topic_alerts) if a["alert"] == "event-dead-lettered"]
    schema = validator("alert.v1.json")
    for alert in alerts:
        schema.validate(alert)
    return alerts


def test_each_dead_lettered_event_raises_an_alert(env, monkeypatch):
    """A metric and an alert count poison events (issue 19, item 4): one event-dead-lettered alert
    per event, keyed by its task, with the cause and the reason; a worker's event keyed by host."""
    sent, _, tasks_f, workers_f, _ = env
    real = engine_fold.fold_task

    def fragile(state, item):
        if item.uuid == "bad" and item.kind == "started":
            raise KeyError("boom")
        return real(state, item)

    monkeypatch.setattr(folders, "fold_task", fragile)
    tasks_f.pack(_items(), PackContext("t", 3, 7, None)).write()
    (alert,) = _dead_letter_alerts(sent)
    assert (alert["key"], alert["cluster"], alert["event_type"], alert["cause"]) == ("bad", "c1", "task-started", "exception")
    assert alert["detail"] == "folding the event failed: KeyError: 'boom'" and (alert["topic"], alert["partition"], alert["offset"]) == ("t", 3, 7)
    assert alert["at"] == T0 + 1

    monkeypatch.setattr(folders, "MAX_VALUE_BYTES", 20_000)
    tasks_f.pack(pack(ev("task-received", T0, uuid="huge", name="t.huge", args="x" * 30_000, retries=0), read_until=T0),
                 PackContext("t", 0, 9, None)).write()  # fmt: skip
    assert [(a["key"], a["name"], a["cause"]) for a in _dead_letter_alerts(sent)][1:] == [("huge", "t.huge", "too-large")]

    monkeypatch.setattr(folders, "fold_worker", lambda state, item: 1 / 0)
    workers_f.pack(pack(ev("worker-heartbeat", T0, freq=2.0), read_until=T0), PackContext("w", 0, 11, None)).write()
    worker_alert = _dead_letter_alerts(sent)[-1]
    assert worker_alert["key"].startswith("c1/") and worker_alert["event_type"] == "worker-heartbeat"
