from streams.engine import parse_event, retirable
from streams.engine.alerts import FailureBursts, newly_failed, said, task_alerts, worker_alerts
from streams.engine.fold import derive_task, fold_task


def _task(*events):
    state = None
    for body in events:
        state, _ = fold_task(state, parse_event(body, "c1"))
    return state


def _ev(kind, ts, **body):
    return {"type": f"task-{kind}", "uuid": "u1", "hostname": "w@h", "pid": 1, "clock": int(ts * 10), "timestamp": ts, **body}


def test_task_critical_alert_once_when_a_retried_task_fails():
    retried = _task(_ev("received", 1.0, name="t.x"), _ev("retried", 2.0, retries=0), _ev("received", 3.0, retries=1))
    before = said(derive_task(retried))
    critical = derive_task(_task(_ev("received", 1.0, name="t.x"), _ev("retried", 2.0, retries=0),
                                 _ev("received", 3.0, retries=1), _ev("failed", 4.0, retries=1, exception="KeyError('k')")))  # fmt: skip
    assert critical["state"] == "CRITICAL"
    [alert] = task_alerts(before, critical)
    assert alert["alert"] == "task-critical" and alert["key"] == "u1" and alert["exception_type"] == "KeyError"
    assert task_alerts(said(critical), critical) == []  # not again on the next change
    assert newly_failed(before[0], critical) and not newly_failed("CRITICAL", critical)


def test_task_orphaned_alert_once():
    record = {"cluster": "c1", "uuid": "u1", "state": "STARTED", "worker": "w@h", "orphaned_at": 50.0}
    [alert] = task_alerts(["STARTED", None], record)
    assert (alert["alert"], alert["at"], alert["worker"]) == ("task-orphaned", 50.0, "w@h")
    assert task_alerts(said(record), record) == []


def test_task_slow_alert_once_when_a_task_finishes_at_or_past_the_threshold():
    slow = derive_task(_task(_ev("received", 1.0, name="t.x"), _ev("started", 2.0), _ev("succeeded", 32.0, runtime=30.0, result="1")))
    assert task_alerts(None, slow) == []  # off by default
    [alert] = task_alerts(["STARTED", None], slow, slow_runtime=30.0)
    assert (alert["alert"], alert["key"], alert["runtime"], alert["threshold"], alert["state"], alert["name"]) == (
        "task-slow", "u1", 30.0, 30.0, "SUCCEEDED", "t.x")
    assert alert["at"] == 32.0 and alert["worker"] == "w@h"
    assert task_alerts(said(slow), slow, slow_runtime=30.0) == []  # not again on the next change
    assert task_alerts(["STARTED", None], slow, slow_runtime=30.5) == []  # faster than the threshold
    running = derive_task(_task(_ev("received", 1.0, name="t.x"), _ev("started", 2.0)))
    assert task_alerts(None, running, slow_runtime=0.001) == []  # no runtime until it finishes


def test_failure_burst_fires_once_per_window_whatever_the_arrival_order():
    bursts = FailureBursts(window=10.0, threshold=3)
    assert bursts.add("c1", "t.x", 105.0, "a") is None
    assert bursts.add("c1", "t.x", 100.0, "b") is None  # late, older failure still counts
    alert = bursts.add("c1", "t.x", 103.0, "c")
    assert alert["alert"] == "failure-burst" and alert["failures"] == 3 and alert["since"] == 100.0
    assert bursts.add("c1", "t.x", 106.0, "d") is None  # same burst, already announced
    assert bursts.add("c1", "t.y", 106.0, "e") is None  # other names count apart
    assert bursts.add("c1", "t.x", 200.0, "f") is None  # spread out: no burst
    assert bursts.add("c1", "t.x", 201.0, "g") is None
    assert bursts.add("c1", "t.x", 202.0, "h")["since"] == 200.0  # a new window, a new alert
    assert all(len(times) <= 3 for times in bursts.recent.values())  # bounded memory


def test_worker_lost_only_when_heartbeats_stopped():
    lost = {"cluster": "c1", "hostname": "w@h", "state": "OFFLINE", "offline_reason": "heartbeat-expired",
            "offline_at": None, "expires_at": 50.0, "heartbeat_at": 46.0}  # fmt: skip
    alive = {**lost, "state": "HEARTBEAT", "offline_reason": None}
    [alert] = worker_alerts(alive, lost)
    assert alert["alert"] == "worker-lost" and alert["key"] == "c1/w@h" and alert["at"] == 50.0
    assert worker_alerts(lost, lost) == []
    assert worker_alerts(alive, {**lost, "offline_reason": "left"}) == []


def test_clock_drift_alert_once_when_the_skew_crosses_the_threshold():
    rec = {"cluster": "c1", "hostname": "w@h", "state": "HEARTBEAT", "offline_reason": None, "seen_at": 10.0}
    [alert] = worker_alerts({**rec, "skew": -0.1}, {**rec, "skew": -45.0}, drift_threshold=16)
    assert (alert["alert"], alert["skew"]) == ("clock-drift", -45.0)
    assert worker_alerts({**rec, "skew": -45.0}, {**rec, "skew": -44.9}, drift_threshold=16) == []
    assert worker_alerts(None, {**rec, "skew": 3.0}, drift_threshold=16) == []


def test_only_finished_tasks_past_retention_leave_the_table():
    done = _task(_ev("received", 1.0), _ev("started", 2.0), _ev("succeeded", 3.0))
    running = _task(_ev("received", 1.0), _ev("started", 2.0))
    assert retirable(done, now=100.0, retention=60.0)
    assert not retirable(done, now=50.0, retention=60.0)
    assert not retirable(running, now=1000.0, retention=60.0)


def test_a_backlog_of_old_events_is_not_retired_while_it_is_being_folded():
    done = _task(_ev("received", 1.0), _ev("started", 2.0), _ev("succeeded", 3.0))
    done["folded_at"] = 95.0  # the app folded these old events just now
    assert not retirable(done, now=100.0, retention=60.0)
    assert retirable(done, now=200.0, retention=60.0)


def test_failure_groups_alert_on_a_new_group_and_on_its_return_after_a_quiet_period():
    from streams.engine.alerts import FailureGroups

    groups = FailureGroups(quiet=100.0)
    new = groups.add("c", "t", "KeyError", "KeyError('user <n>')", 10.0, "u1", "KeyError('user 1')")
    assert new["alert"] == "failure-group" and new["reason"] == "new" and new["key"] == "c/t/KeyError/KeyError('user <n>')"
    assert new["last_uuid"] == "u1" and new["exception"] == "KeyError('user 1')" and new["at"] == 10.0
    assert groups.add("c", "t", "KeyError", "KeyError('user <n>')", 60.0, "u2") is None  # not quiet long enough
    assert groups.add("c", "t", "KeyError", "KeyError('user <n>')", 50.0, "u0") is None  # older than the newest: nothing
    back = groups.add("c", "t", "KeyError", "KeyError('user <n>')", 160.0, "u3")
    assert back["reason"] == "returned" and back["quiet_seconds"] == 100.0  # quiet counted from the newest failure (60)
    assert groups.add("c", "t", "KeyError", "KeyError('account <n>')", 161.0, "u4")["reason"] == "new"  # another message
    assert groups.add("other", "t", "KeyError", "KeyError('user <n>')", 161.0, "u5")["reason"] == "new"  # another cluster


def test_group_alert_fingerprints_the_failure_record():
    import orjson

    from streams.engine.alerts import FailureGroups
    from streams.folders import group_alert

    groups = FailureGroups(quiet=3600.0)
    failure = {"cluster": "c", "name": "t", "at": 5.0, "uuid": "u1", "exception_type": "KeyError", "exception": "KeyError('user 1234')"}
    alert = group_alert(groups, orjson.dumps(failure))
    assert alert["fingerprint"] == "KeyError('user <n>')" and alert["exception_type"] == "KeyError"
    assert group_alert(groups, orjson.dumps({**failure, "uuid": "u2", "at": 6.0, "exception": "KeyError('user 99')"})) is None
    old = {k: v for k, v in failure.items() if k not in ("exception_type", "exception")}  # written before the exception was carried
    assert group_alert(groups, orjson.dumps({**old, "at": 7.0}))["fingerprint"] == ""
