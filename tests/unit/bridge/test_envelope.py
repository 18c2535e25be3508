import json

import orjson

from bridge.envelope import DEAD, TASK, WORKER, Entry, Enveloper


def wrap(body, rk="task.multi"):
    return Enveloper("prod", "b1").wrap(body if isinstance(body, bytes) else json.dumps(body).encode(), rk, 123.5)


def test_task_multi_is_split_keyed_by_uuid_and_untouched(scenario_raw):
    multi = next(m for m in scenario_raw if m["is_batch"])
    out = wrap(multi["body"])
    assert [r.kind for r in out] == [TASK] * len(multi["body"])
    for entry, event in zip(out, multi["body"]):
        assert isinstance(entry, Entry) and entry.key == event["uuid"].encode()
        assert entry.item["event"] == event  # the raw event, clock and timestamp as the producer sent them
        assert (entry.item["received_at"], entry.item["routing_key"]) == (123.5, "task.multi")
        assert "redacted" not in entry.item


def test_worker_events_keyed_by_cluster_and_hostname(scenario_raw):
    hb = next(m for m in scenario_raw if m["routing_key"] == "worker.heartbeat")
    (entry,) = wrap(hb["body"], "worker.heartbeat")
    assert (entry.kind, entry.key) == (WORKER, b"prod/w1@vm")


def test_unknown_types_are_kept_not_dead_lettered():
    """A well-formed event of a type the rules do not know travels on: task-* by uuid, anything
    else with a hostname on the worker-events topic keyed by its worker."""
    out = wrap([{"type": "task-party", "uuid": "u1", "timestamp": 1.0}], "task.multi")
    assert [(e.kind, e.key) for e in out] == [(TASK, b"u1")]
    for etype in ("custom-thing", "worker-stretched", "heartbeat"):
        (entry,) = wrap({"type": etype, "hostname": "w@h", "timestamp": 1.0}, "x")
        assert (entry.kind, entry.key) == (WORKER, b"prod/w@h"), etype


def test_sequence_numbers_grow_per_bridge():
    env = Enveloper("c", "b")
    events = [{"type": "task-started", "uuid": str(i), "timestamp": 1} for i in range(3)]
    seqs = [e.item["seq"] for e in env.wrap(json.dumps(events).encode(), "task.multi", 0)]
    seqs += [e.item["seq"] for e in env.wrap(json.dumps(events[0]).encode(), "task.started", 0)]
    assert seqs == [1, 2, 3, 4]


def test_bad_bodies_become_dead_letters_with_reason_and_raw():
    cases = {
        b"\xff\xfe not json": "not JSON",
        b"[]": "empty event list",
        b'"text"': "not an event object",
        b'{"uuid": "x"}': "'type'",
        b'{"type": "", "hostname": "w"}': "'type'",
        b'{"type": "task-sent"}': "uuid",
        b'{"type": "worker-heartbeat"}': "worker event without a 'hostname'",
        b'{"type": "party"}': "non-task event without a 'hostname'",
        b'{"type": "party", "hostname": 7}': "'hostname'",
    }
    for body, reason in cases.items():
        out = Enveloper("c", "b").wrap(body, "rk", 0)
        assert len(out) == 1 and out[0].kind == DEAD, body
        letter = orjson.loads(out[0].value)
        assert reason in letter["reason"] and letter["stage"] == "bridge", (body, letter["reason"])
        assert "raw" in letter or "raw_b64" in letter


def test_one_bad_event_in_a_batch_does_not_lose_the_good_ones():
    body = json.dumps([{"type": "task-started", "uuid": "a", "timestamp": 1}, 5, {"type": "task-started", "uuid": "b", "timestamp": 2}])
    kinds = [r.kind for r in Enveloper("c", "b").wrap(body.encode(), "task.multi", 0)]
    assert kinds == [TASK, DEAD, TASK]
