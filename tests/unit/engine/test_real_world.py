"""Issue 12's cases, each one example of a kind of fault: clock skew, stalled heartbeats, retries on
another worker, dead-letter setups, cancels, lost task-received events, orphaned tasks.

Events carry the monitor's receive time (as the bridge stamps it) separately from the sender's
timestamp, so every test can give the sender a clock of its own.
"""

import pytest

from streams.engine import Tracker, derive_task, derive_worker, fold_task, parse_event, task_deliveries
from streams.engine.alerts import said, task_alerts, worker_alerts
from streams.engine.fold import fold_worker, judge_worker

T0 = 1_800_000_000.0
_clock = iter(range(1, 100_000))


def body(type_, ts, host="w1@h", uuid="u-1", **fields):
    b = {"type": type_, "hostname": host, "pid": 7, "clock": next(_clock), "timestamp": ts}
    if type_.startswith("task-"):
        b["uuid"] = uuid
    b.update(fields)
    return b


def capture(type_, received, skew=0.0, **fields):
    """A capture record as the fixtures hold them: the monitor got it at ``received``; the sender's
    clock reads ``received + skew``."""
    return {"routing_key": type_.replace("-", "."), "recv_time": received, "body": body(type_, received + skew, **fields)}


def task_record(*records):
    state = None
    for rec in records:
        event = parse_event(rec["body"], None, rec["recv_time"])
        state, _ = fold_task(state, event)
    return derive_task(state)


# -- 1. a worker's clock behind the monitor's -------------------------------------------------
@pytest.mark.parametrize("skew", [-45.0, -3.0, +30.0])
def test_worker_with_a_skewed_clock_is_alive_and_shows_its_skew(skew):
    t = Tracker()
    t.feed(capture("worker-online", T0, skew, freq=2.0))
    for i in range(1, 31):  # heartbeats every 2 s, all arriving on time
        t.feed(capture("worker-heartbeat", T0 + 2 * i, skew, freq=2.0, active=0, processed=i))
    [worker] = t.worker_records(now=T0 + 61)  # judged on the monitor's clock, 1 s after the last
    assert (worker["state"], worker["offline_reason"]) == ("HEARTBEAT", None)
    assert worker["skew"] == pytest.approx(skew)
    assert worker["expires_at"] == pytest.approx(T0 + 60 + 4)  # last receive + 2 x freq


def test_skewed_worker_still_expires_after_silence_and_drift_alerts_once():
    state = None
    for i in range(5):
        state, _ = fold_worker(state, parse_event(body("worker-heartbeat", T0 + 2 * i - 45, freq=2.0), None, T0 + 2 * i))
    alive = derive_worker(state, T0 + 9)
    assert alive["state"] == "HEARTBEAT"
    [drift] = worker_alerts(None, alive, drift_threshold=16)
    assert drift["alert"] == "clock-drift" and drift["skew"] == pytest.approx(-45)
    assert judge_worker(state, T0 + 12.5)  # 8 + 2 x 2 = 12 < 12.5
    lost = derive_worker(state)
    assert (lost["state"], lost["offline_reason"]) == ("OFFLINE", "heartbeat-expired")
    assert [a["alert"] for a in worker_alerts(alive, lost, drift_threshold=16)] == ["worker-lost"]
    assert not judge_worker(state, T0 + 20)  # judged once; a later watermark changes nothing


@pytest.mark.parametrize("order", ["arrival", "reversed"])
def test_a_node_restarted_with_its_clock_stepped_back_leaves_cleanly_with_its_new_gauges(order):
    """Run 1 of w1@h with a clock 40 s ahead, gone without a word; run 2 (clock corrected, new pid)
    and a clean stop 25 s later: left, not heartbeat-expired, and run 2's pid. Timestamps of two
    runs on a stepped clock cannot be compared; their receive times can."""
    records = [capture("worker-online", T0, 40.0, freq=2.0, pid=100)]
    records += [capture("worker-heartbeat", T0 + 2 * i, 40.0, freq=2.0, pid=100, processed=262) for i in range(1, 5)]
    records += [capture("worker-online", T0 + 20, 0.0, freq=2.0, pid=200)]
    records += [capture("worker-heartbeat", T0 + 20 + 2 * i, 0.0, freq=2.0, pid=200, processed=i) for i in range(1, 10)]
    records += [capture("worker-offline", T0 + 45, 0.0, freq=2.0, pid=200)]
    t = Tracker()
    for rec in records if order == "arrival" else list(reversed(records)):
        t.feed(rec)
    [worker] = t.worker_records(now=T0 + 100)
    assert (worker["state"], worker["offline_reason"], worker["pid"]) == ("OFFLINE", "left", 200)


def test_a_rereading_of_older_input_does_not_bring_a_lost_worker_back():
    state = None
    for i in range(3):
        state, _ = fold_worker(state, parse_event(body("worker-heartbeat", T0 + 2 * i, freq=2.0), None, T0 + 2 * i))
    judge_worker(state, T0 + 30)
    # after a restart the app re-reads packs it had folded: their watermark is older
    again, changed = fold_worker(state, parse_event(body("worker-heartbeat", T0 + 2, freq=2.0), None, T0 + 2))
    assert derive_worker(again, T0 + 3)["state"] == "OFFLINE"


# -- 2. a busy worker whose heartbeats stall ----------------------------------------------------
def test_task_events_are_signs_of_life_when_heartbeats_stall():
    t = Tracker()
    t.feed(capture("worker-online", T0, freq=2.0))
    t.feed(capture("worker-heartbeat", T0 + 2, freq=2.0))
    for i in range(10):  # task events every 3 s for 30 s, no heartbeat (a blocked gevent loop)
        for j, kind in enumerate(("task-received", "task-started", "task-succeeded")):
            t.feed(capture(kind, T0 + 3 + 3 * i + j * 0.5, uuid=f"busy-{i}"))
    [worker] = t.worker_records()
    assert (worker["state"], worker["offline_reason"]) == ("HEARTBEAT", None)
    assert worker["seen_at"] == pytest.approx(T0 + 3 + 27 + 1.0)


def test_a_worker_known_only_from_task_events_gets_a_record():
    t = Tracker()
    t.feed(capture("task-received", T0, host="quiet@h", uuid="q1"))
    t.feed(capture("task-started", T0 + 1, host="quiet@h", uuid="q1"))
    t.feed(capture("task-sent", T0 + 1, host="client@h", uuid="q2"))  # a client is not a worker
    [worker] = t.worker_records()
    assert (worker["hostname"], worker["state"], worker["seen_at"]) == ("quiet@h", "ONLINE", T0 + 1)


# -- 3. a retry picked up by another worker -------------------------------------------------------
def test_fields_follow_the_current_attempt_on_another_worker():
    events = [
        capture("task-received", T0, host="A", retries=0, name="t.x", args="(1,)"),
        capture("task-started", T0 + 0.1, host="A"),
        # the usual real order: the next attempt is received before the retry is announced
        capture("task-received", T0 + 0.3, host="B", retries=1, name="t.x", args="(1,)", eta="2026-11-29T10:05:00"),
        capture("task-retried", T0 + 0.4, host="A", exception="IOError('x')"),
    ]
    r = task_record(*events)
    assert (r["state"], r["retries"], r["worker"]) == ("RECEIVED", 1, "B")
    assert (r["received_at"], r["started_at"], r["eta"]) == (T0 + 0.3, None, "2026-11-29T10:05:00")
    assert r["exception_type"] == "IOError"  # why it is waiting: the latest retry's exception
    attempts = [(d["attempt"], d["worker"], d["ended_by"]) for d in task_deliveries(_state(events))]
    assert attempts == [(0, "A", "retried"), (1, "B", None)]


def test_the_worker_is_not_decided_by_clocks_of_two_hosts():
    # B's clock is 100 s behind A's: by timestamps B's receive looks older than A's retry.
    events = [
        capture("task-received", T0, host="A", retries=0),
        capture("task-started", T0 + 0.1, host="A"),
        capture("task-retried", T0 + 0.2, host="A"),
        capture("task-received", T0 + 0.3, -100.0, host="B", retries=1),
        capture("task-started", T0 + 0.4, -100.0, host="B"),
    ]
    r = task_record(*events)
    assert (r["state"], r["retries"], r["worker"]) == ("STARTED", 1, "B")


def test_retry_on_the_same_worker_received_before_retried():
    events = [
        capture("task-received", T0, host="A", retries=0),
        capture("task-started", T0 + 0.1, host="A"),
        capture("task-received", T0 + 0.2, host="A", retries=1),
        capture("task-retried", T0 + 0.3, host="A"),
    ]
    assert (task_record(*events)["state"], task_record(*events)["retries"]) == ("RECEIVED", 1)
    r = task_record(*events, capture("task-started", T0 + 5, host="A"))
    assert (r["state"], r["started_at"]) == ("STARTED", T0 + 5)


# -- 4. dead-letter setups -------------------------------------------------------------------------
def test_dlq_setup_failure_after_retries_is_critical_tagged_ignored_and_alerts():
    # acks_late + task_acks_on_failure_or_timeout=False: task-rejected(requeue=false) then task-failed
    events = [capture("task-received", T0, retries=0, name="t.x"), capture("task-started", T0 + 1), capture("task-retried", T0 + 2),
              capture("task-received", T0 + 3, retries=1), capture("task-started", T0 + 4), capture("task-retried", T0 + 5),
              capture("task-received", T0 + 6, retries=2), capture("task-started", T0 + 7)]  # fmt: skip
    before = task_record(*events)
    r = task_record(*events, capture("task-rejected", T0 + 8, requeue=False), capture("task-failed", T0 + 8.1, exception="KeyError('k')"))
    assert (r["state"], r["retries"], r["rejection"], r["exception_type"]) == ("CRITICAL", 2, "ignored", "KeyError")
    assert [a["alert"] for a in task_alerts(said(before), r)] == ["task-critical"]


# -- 5. task-cancelled -------------------------------------------------------------------------------
def test_cancelled_on_connection_loss_then_redelivered_elsewhere():
    events = [capture("task-received", T0, host="etl-1"), capture("task-started", T0 + 1, host="etl-1"),
              capture("task-cancelled", T0 + 2, host="etl-1")]  # fmt: skip
    assert not hasattr(parse_event(events[2]["body"]), "reason")  # a known event, not a dead letter
    r = task_record(*events)
    assert (r["state"], r["worker"], r["cancels"], r["retries"]) == ("RETRY", "etl-1", 1, 0)
    r = task_record(*events, capture("task-received", T0 + 3, host="etl-2"))
    assert (r["state"], r["worker"], r["started_at"], r["retries"]) == ("RECEIVED", "etl-2", None, 0)


def test_unknown_task_event_type_is_kept_and_changes_no_state():
    base = [capture("task-received", T0), capture("task-started", T0 + 1)]
    r = task_record(*base, capture("task-progress", T0 + 2, percent=50))
    assert (r["state"], r["events_count"]) == ("STARTED", 3)


# -- 6. retries with only task-retried as evidence ----------------------------------------------------
def test_retries_counted_from_retried_events_when_received_events_are_missing():
    events = [capture("task-received", T0, retries=0), capture("task-started", T0 + 1), capture("task-retried", T0 + 2),
              capture("task-started", T0 + 3), capture("task-retried", T0 + 4), capture("task-started", T0 + 5),
              capture("task-failed", T0 + 6, exception="ValueError('v')")]  # fmt: skip
    r = task_record(*events)
    assert (r["state"], r["retries"]) == ("CRITICAL", 2)


# -- 9. orphaned tasks -------------------------------------------------------------------------------
def test_tasks_of_a_lost_worker_are_orphaned_until_a_later_event():
    t = Tracker()
    t.feed(capture("worker-online", T0, host="A", freq=2.0))
    t.feed(capture("worker-online", T0, host="B", freq=2.0))
    t.feed(capture("task-received", T0 + 0.5, host="A", uuid="running"))
    t.feed(capture("task-started", T0 + 0.6, host="A", uuid="running"))
    t.feed(capture("task-received", T0 + 0.7, host="A", uuid="done"))
    t.feed(capture("task-started", T0 + 0.8, host="A", uuid="done"))
    t.feed(capture("task-succeeded", T0 + 0.9, host="A", uuid="done"))
    for i in range(1, 8):  # A goes silent (SIGKILL); B keeps beating, so the watermark moves
        t.feed(capture("worker-heartbeat", T0 + i, host="B", freq=2.0))
    records = {r["uuid"]: r for r in t.task_records()}
    workers = {w["hostname"]: w for w in t.worker_records()}
    assert (workers["A"]["state"], workers["A"]["offline_reason"]) == ("OFFLINE", "heartbeat-expired")
    lost_at = workers["A"]["expires_at"]
    assert (records["running"]["state"], records["running"]["orphaned_at"]) == ("STARTED", lost_at)
    assert records["done"]["orphaned_at"] is None
    [alert] = task_alerts(["STARTED", None], records["running"])
    assert alert["alert"] == "task-orphaned"
    # acks_late: the message comes back to B
    t.feed(capture("task-received", T0 + 9, host="B", uuid="running"))
    r = next(r for r in t.task_records() if r["uuid"] == "running")
    assert (r["state"], r["worker"], r["orphaned_at"]) == ("RECEIVED", "B", None)


def _state(records):
    state = None
    for rec in records:
        state, _ = fold_task(state, parse_event(rec["body"], None, rec["recv_time"]))
    return state
