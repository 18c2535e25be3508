"""A warm or soft shutdown is not a lost worker (issue 19, item 1).

Celery's Heart.stop sends worker-offline first, then the pool drains: the task events of the tasks
that finish (task-succeeded, or task-cancelled on a soft/cold shutdown) come *after* the offline,
from the same process (same pid). The worker stays OFFLINE(left): no worker-lost, no
task-orphaned. A worker-online/heartbeat, or task events of another pid (a new process under the
same hostname), received later bring it back.
"""

import json
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.envelope import Entry, Enveloper
from bridge.packs import Packer
from streams.engine import Tracker, derive_worker, iter_events
from streams.engine.alerts import worker_alerts
from tests.unit.test_folders import Outputs, PackContext, SETTINGS, Sent, Table, Topics, WorkerFolder, TaskFolder

T0 = 1_800_000_000.0
HOST = "w1@h"


def _event(etype, at, clock, pid=100, uuid=None, **fields):
    body = {"type": etype, "hostname": HOST, "pid": pid, "clock": clock, "timestamp": at, **fields}
    if uuid:
        body["uuid"] = uuid
    return {"routing_key": "x", "recv_time": at, "body": body}


def warm_shutdown(outcome="task-succeeded"):
    """Online, heartbeats, a task running; SIGTERM: worker-offline, then the task's end 3 s later."""
    events = [_event("worker-online", T0, 1, freq=2.0)]
    events += [_event("worker-heartbeat", T0 + 2 * i, 1 + i, freq=2.0, active=1) for i in range(1, 4)]
    events += [_event("task-received", T0 + 1, 10, uuid="long", name="t.long", retries=0),
               _event("task-started", T0 + 1.1, 11, uuid="long"),
               _event("worker-offline", T0 + 7, 12, freq=2.0, active=1),
               _event(outcome, T0 + 10, 13, uuid="long", **({"result": "1", "runtime": 9.0} if outcome == "task-succeeded" else {}))]  # fmt: skip
    return events


def _track(records, until):
    t = Tracker()
    for r in records:
        t.feed(r)
    lost = t.judge(until)
    return t, lost


def test_warm_shutdown_drains_its_task_after_the_offline_and_stays_left():
    t, lost = _track(warm_shutdown(), T0 + 300)
    assert lost == []
    (worker,) = t.worker_records(T0 + 300)
    assert (worker["state"], worker["offline_reason"]) == ("OFFLINE", "left")
    (task,) = t.task_records()
    assert (task["state"], task["orphaned_at"], task["result"]) == ("SUCCEEDED", None, "1")


def test_soft_shutdown_cancels_after_the_offline_and_stays_left():
    t, lost = _track(warm_shutdown("task-cancelled"), T0 + 300)
    assert lost == []
    (worker,) = t.worker_records(T0 + 300)
    assert (worker["state"], worker["offline_reason"]) == ("OFFLINE", "left")
    (task,) = t.task_records()
    assert task["orphaned_at"] is None and task["cancels"] == 1


def test_cold_shutdown_capture_stays_left():
    """The real capture: worker-offline, then task-cancelled (same pid) of the cold shutdown."""
    path = "tests/fixtures/celery-emit-paths/cold_shutdown.jsonl"
    t = Tracker()
    last = 0.0
    for line in open(path):
        record = json.loads(line)
        last = max(last, record["recv_time"])
        t.feed(record)
    assert t.judge(last + 600) == []
    worker = next(w for w in t.worker_records(last + 600) if w["hostname"].startswith("ep-cold-shutdown"))
    assert (worker["state"], worker["offline_reason"]) == ("OFFLINE", "left")


def test_a_new_heartbeat_brings_it_back_then_silence_is_a_loss():
    events = warm_shutdown() + [_event("worker-heartbeat", T0 + 20, 20, freq=2.0)]
    t, _ = _track(events, T0 + 21)
    (worker,) = t.worker_records(T0 + 21)
    assert worker["state"] == "HEARTBEAT"
    assert t.judge(T0 + 30) == [f"/{HOST}"]


def test_a_new_process_under_the_same_name_brings_it_back():
    """Restarted without heartbeats (a new pid): its task events are a new life, not a drain."""
    events = warm_shutdown() + [_event("task-received", T0 + 20, 1, pid=200, uuid="next", retries=0),
                                _event("task-started", T0 + 20.1, 2, pid=200, uuid="next")]  # fmt: skip
    t, lost = _track(events, T0 + 21)
    (worker,) = t.worker_records(T0 + 21)
    assert worker["state"] != "OFFLINE"
    # and its running task is orphaned when that process goes silent for good
    lost = t.judge(T0 + 20.1 + 2 * 60 + 1)
    assert lost == [f"/{HOST}"]
    assert {r["uuid"]: r["orphaned_at"] is not None for r in t.task_records()} == {"long": False, "next": True}


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_left_whatever_the_order_and_duplicates(rnd, dups):
    events = warm_shutdown() + [_event("task-received", T0 + 8, 14, uuid="other", retries=0)]
    shuffled = events + [rnd.choice(events) for _ in range(dups)]
    rnd.shuffle(shuffled)
    t, lost = _track(shuffled, T0 + 300)
    (worker,) = t.worker_records(T0 + 300)
    assert (worker["state"], worker["offline_reason"], lost) == ("OFFLINE", "left", [])


def test_the_streams_folders_raise_no_worker_lost_nor_task_orphaned():
    """Through the bridge's packs (seen entries carry the pid) and the streams agents' folders."""
    env = Enveloper("c1", "b")
    packer = Packer("c1", "b")
    sent = Sent()
    outputs = Outputs(sent, Topics(SETTINGS, "app"))
    tasks_f = TaskFolder(Table(), Table(), outputs)
    workers_f = WorkerFolder(Table(), outputs, 2.0, 16.0)
    ctx = PackContext("t", 0, 0, None)
    for record in warm_shutdown():
        entries = [e for e in env.wrap(orjson.dumps(record["body"]), "x", record["recv_time"]) if isinstance(e, Entry)]
        packs, _ = packer.pack(entries, record["recv_time"], lambda kind: 1)
        for p in packs:
            items = list(iter_events(orjson.loads(p.value)))
            folded = (tasks_f if p.kind == "task" else workers_f).pack(items, ctx)
            folded.write()
            assert not [a for a in folded.alerts if a["alert"] in ("worker-lost", "task-orphaned")]
    for at in range(20, 400, 5):  # ticks: the watermark moves on
        folded = workers_f.pack(list(iter_events(orjson.loads(packer.empty(0, T0 + at).value))), ctx)
        folded.write()
        assert folded.alerts == [] and folded.notices == []
    worker = sent.on(SETTINGS.topic_worker_states)[-1]
    assert (worker["state"], worker["offline_reason"]) == ("OFFLINE", "left")
    assert sent.on(SETTINGS.topic_alerts) == []


# -- workers without heartbeats (issue 19, item 2) ---------------------------------------------
def _task_only(at, pid=300):
    return [_event("task-received", at, 1, pid=pid, uuid="quiet", name="t.q", retries=0),
            _event("task-started", at + 0.1, 2, pid=pid, uuid="quiet")]  # fmt: skip


def test_a_worker_without_heartbeats_lives_by_celerys_freq_60_rule():
    t = Tracker()
    for r in _task_only(T0):
        t.feed(r)
    seen = T0 + 0.1
    assert t.judge(seen + 5) == []  # the old 2 s rule declared it lost 4 s after its last event
    (worker,) = t.worker_records(seen + 5)
    assert (worker["state"], worker["freq"], worker["expires_at"]) == ("ONLINE", None, seen + 120)
    (task,) = t.task_records()
    assert task["orphaned_at"] is None
    assert t.judge(seen + 119) == []
    assert t.judge(seen + 121) == [f"/{HOST}"]  # silence past 2 x 60 s: lost once, its task orphaned
    assert t.judge(seen + 200) == []
    (task,) = t.task_records()
    assert (task["state"], task["orphaned_at"]) == ("STARTED", seen + 120)


def test_a_heartbeat_gives_the_worker_its_own_freq():
    t = Tracker()
    for r in _task_only(T0) + [_event("worker-heartbeat", T0 + 1, 3, pid=300, freq=5.0)]:
        t.feed(r)
    (worker,) = t.worker_records(T0 + 2)
    assert (worker["state"], worker["expires_at"]) == ("HEARTBEAT", T0 + 1 + 10)
