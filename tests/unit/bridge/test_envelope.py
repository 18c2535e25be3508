import json

import orjson

from bridge.envelope import DEAD, TASK, WORKER, Enveloper


def wrap(body, rk="task.multi"):
    return Enveloper("prod", "b1").wrap(body if isinstance(body, bytes) else json.dumps(body).encode(), rk, 123.5)


def test_task_multi_is_split_keyed_by_uuid_and_untouched(scenario_raw):
    multi = next(m for m in scenario_raw if m["is_batch"])
    out = wrap(multi["body"])
    assert [r.kind for r in out] == [TASK] * len(multi["body"])
    for record, event in zip(out, multi["body"]):
        env = orjson.loads(record.value)
        assert record.key == event["uuid"].encode()
        assert env["event"] == event  # the raw event, clock and timestamp as the producer sent them
        assert (env["v"], env["cluster"], env["bridge"], env["received_at"], env["routing_key"]) == (1, "prod", "b1", 123.5, "task.multi")


def test_worker_events_keyed_by_cluster_and_hostname(scenario_raw):
    hb = next(m for m in scenario_raw if m["routing_key"] == "worker.heartbeat")
    (record,) = wrap(hb["body"], "worker.heartbeat")
    assert (record.kind, record.key) == (WORKER, b"prod/w1@vm")


def test_sequence_numbers_grow_per_bridge():
    env = Enveloper("c", "b")
    events = [{"type": "task-started", "uuid": str(i), "timestamp": 1} for i in range(3)]
    seqs = [orjson.loads(r.value)["seq"] for r in env.wrap(json.dumps(events).encode(), "task.multi", 0)]
    seqs += [orjson.loads(r.value)["seq"] for r in env.wrap(json.dumps(events[0]).encode(), "task.started", 0)]
    assert seqs == [1, 2, 3, 4]


def test_bad_bodies_become_dead_letters_with_reason_and_raw():
    cases = {
        b"\xff\xfe not json": "not JSON",
        b"[]": "empty event list",
        b'"text"': "not an event object",
        b'{"uuid": "x"}': "'type'",
        b'{"type": "task-sent"}': "uuid",
        b'{"type": "worker-heartbeat"}': "hostname",
        b'{"type": "party"}': "unknown event type",
    }
    for body, reason in cases.items():
        out = Enveloper("c", "b").wrap(body, "rk", 0)
        assert len(out) == 1 and out[0].kind == DEAD, body
        letter = orjson.loads(out[0].value)
        assert reason in letter["reason"] and letter["stage"] == "bridge"
        assert "raw" in letter or "raw_b64" in letter


def test_one_bad_event_in_a_batch_does_not_lose_the_good_ones():
    body = json.dumps([{"type": "task-started", "uuid": "a", "timestamp": 1}, 5, {"type": "task-started", "uuid": "b", "timestamp": 2}])
    kinds = [r.kind for r in Enveloper("c", "b").wrap(body.encode(), "task.multi", 0)]
    assert kinds == [TASK, DEAD, TASK]
