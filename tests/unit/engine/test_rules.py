"""One test (or a few) per rule of docs/state-rules.md, on small hand-written histories."""

import pytest

from streams.engine import Invalid, Tracker, derive_task, derive_worker, exception_type, fold_task, parse_event

U = "11111111-2222-3333-4444-555555555555"
_clock = iter(range(1, 10_000))


def ev(type_, ts, **fields):
    body = {"type": type_, "uuid": U, "hostname": fields.pop("hostname", "w1@h"), "pid": 10, "clock": next(_clock), "timestamp": ts}
    body.update(fields)
    return body


def record(events):
    state = None
    for body in events:
        event = parse_event(body)
        assert not isinstance(event, Invalid), event
        state, _ = fold_task(state, event)
    return derive_task(state)


def sent(ts, retries=0, **kw):
    return ev("task-sent", ts, hostname="client@h", name="t.x", args="()", kwargs="{}", retries=retries, queue="q", **kw)


def received(ts, retries=0):
    return ev("task-received", ts, name="t.x", args="()", kwargs="{}", retries=retries)


def test_queued_received_started():
    assert record([sent(1)])["state"] == "QUEUED"
    assert record([sent(1), received(2)])["state"] == "RECEIVED"
    assert record([sent(1), received(2), ev("task-started", 3)])["state"] == "STARTED"


def test_succeeded_and_fields():
    r = record([sent(1), received(2), ev("task-started", 3), ev("task-succeeded", 4, result="5", runtime=0.5)])
    assert (r["state"], r["result"], r["runtime"], r["retries"]) == ("SUCCEEDED", "5", 0.5, 0)
    assert (r["queued_at"], r["received_at"], r["started_at"], r["succeeded_at"]) == (1, 2, 3, 4)
    assert (r["worker"], r["client"], r["queue"], r["name"], r["events_count"]) == ("w1@h", "client@h", "q", "t.x", 4)


def test_retries_is_the_highest_seen_on_sent_or_received():
    r = record([received(1, 0), received(3, 2), sent(2, 1)])
    assert r["retries"] == 2


def test_retry_then_waiting():
    # Waiting for the 1st retry: one attempt ended by task-retried, so retries = 1.
    r = record([received(1, 0), ev("task-started", 2), ev("task-retried", 3, exception="IOError('x')")])
    assert (r["state"], r["retries"], r["exception_type"]) == ("RETRY", 1, "IOError")


def test_next_attempt_received_before_previous_retried_is_received():
    # The real order seen in 7 of 9 retries: received(n+1) is emitted before retried(n).
    events = [received(1, 0), ev("task-started", 2), received(3, 1), ev("task-retried", 4)]
    r = record(events)
    assert (r["state"], r["retries"]) == ("RECEIVED", 1)


def test_recovered_and_critical():
    base = [received(1, 0), ev("task-started", 2), ev("task-retried", 3), received(4, 1), ev("task-started", 5)]
    assert record(base + [ev("task-succeeded", 6, result="1", runtime=0.1)])["state"] == "RECOVERED"
    r = record(base + [ev("task-failed", 6, exception="KeyError('k')")])
    assert (r["state"], r["retries"], r["exception_type"]) == ("CRITICAL", 1, "KeyError")


def test_failed_without_retries_and_duplicate_failed_counts_once():
    tb = "Traceback...\nbilliard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)\n"
    events = [received(1), ev("task-started", 2), ev("task-failed", 3, exception="ExceptionWithTraceback()", traceback=tb),
              ev("task-failed", 3.1, exception="ExceptionWithTraceback()", traceback=tb)]  # fmt: skip
    r = record(events)
    assert (r["state"], r["exception_type"], r["exception"]) == ("FAILED", "TimeLimitExceeded", "ExceptionWithTraceback()")


def test_ordinary_failure_with_a_drop_is_failed_tagged_ignored():
    # acks_late + task_acks_on_failure_or_timeout=False: Celery rejects every failed message
    # (requeue=False) to drop it from the prefetched queue; the task FAILED all the same.
    events = [received(1), ev("task-started", 2), ev("task-rejected", 3, requeue=False), ev("task-failed", 4, exception="KeyError('k')")]
    r = record(events)
    assert (r["state"], r["rejection"], r["requeues"], r["exception_type"]) == ("FAILED", "ignored", 0, "KeyError")


def test_own_reject_is_rejected_ignored_with_or_without_the_rejected_event():
    tb = "Traceback (most recent call last):\n  ...\ncelery.exceptions.Reject: (no reason given, False)\n"
    failed = ev("task-failed", 3, exception="Reject(None, False)", traceback=tb)
    r = record([received(1), ev("task-started", 2), failed, ev("task-rejected", 4, requeue=False)])
    assert (r["state"], r["rejection"], r["exception_type"]) == ("REJECTED", "ignored", "Reject")
    r = record([received(1), ev("task-started", 2), failed])  # without acks_late: only task-failed
    assert (r["state"], r["rejection"], r["exception_type"]) == ("REJECTED", "ignored", "Reject")
    r = record([received(1), ev("task-started", 2), ev("task-rejected", 4, requeue=False)])
    assert (r["state"], r["rejection"]) == ("REJECTED", "ignored")


def test_requeue_is_not_a_retry():
    events = [received(1), ev("task-started", 2), ev("task-rejected", 3, requeue=True)]
    r = record(events)
    assert (r["state"], r["rejection"], r["requeues"], r["retries"]) == ("REJECTED", "requeued", 1, 0)
    r = record(events + [received(4)])
    assert (r["state"], r["requeues"], r["retries"]) == ("RECEIVED", 1, 0)
    r = record(events + [received(4), ev("task-started", 5), ev("task-succeeded", 6, runtime=0.1)])
    assert (r["state"], r["rejection"], r["requeues"]) == ("SUCCEEDED", "requeued", 1)


@pytest.mark.parametrize(
    "fields, reason, signum",
    [
        ({"expired": True, "terminated": False, "signum": None}, "expired", None),
        ({"expired": False, "terminated": True, "signum": 15}, "terminated", 15),
        ({"expired": False, "terminated": True, "signum": 9}, "terminated", 9),
        ({"expired": False, "terminated": False, "signum": None}, "revoked", None),
    ],
)
def test_revocation_reasons(fields, reason, signum):
    r = record([received(1), ev("task-revoked", 2, **fields)])
    assert (r["state"], r["revocation_reason"], r["signum"]) == ("REVOKED", reason, signum)


def test_terminal_precedence_revoked_over_failed_succeeded_over_failed():
    assert record([received(1), ev("task-failed", 3), ev("task-revoked", 2, terminated=True, signum=9)])["state"] == "REVOKED"
    assert record([received(1), ev("task-failed", 2), ev("task-succeeded", 3, runtime=1.0)])["state"] == "SUCCEEDED"


def test_exception_type_parsing():
    assert exception_type("ValueError('boom')", None) == "ValueError"
    assert exception_type("NotRegistered('x')", None) == "NotRegistered"
    assert exception_type("ExceptionWithTraceback()", "Traceback\n  ...\nbilliard.exceptions.WorkerLostError: lost\n") == "WorkerLostError"
    assert exception_type("reject: bad", "Traceback\ncelery.exceptions.Reject: ('bad', False)\n") == "Reject"
    assert exception_type("None", "Traceback\ncelery.exceptions.Retry: Retry in 1s\n") == "Retry"
    assert exception_type(None, None) is None


@pytest.mark.parametrize(
    "body, reason",
    [
        ([], "not an object"),
        ("text", "not an object"),
        ({"uuid": U, "timestamp": 1}, "'type'"),
        ({"type": "task-sent", "timestamp": 1}, "uuid"),
        ({"type": "task-sent", "uuid": "", "timestamp": 1}, "uuid"),
        ({"type": "task-sent", "uuid": U}, "timestamp"),
        ({"type": "task-sent", "uuid": U, "timestamp": "x"}, "timestamp"),
        ({"type": "task-sent", "uuid": U, "timestamp": 1.7e12}, "out of range"),  # milliseconds
        ({"type": "task-revoked", "uuid": U, "timestamp": 1, "signum": 2**40}, "out of range"),
        ({"type": "worker-heartbeat", "hostname": "w", "timestamp": 1, "pid": -1}, "out of range"),
        ({"type": "task-sent", "uuid": U, "timestamp": -5}, "out of range"),
        ({"type": "worker-heartbeat", "hostname": "w", "timestamp": 2**32}, "out of range"),
        ({"type": "task-sent", "uuid": U, "timestamp": 1, "retries": "2"}, "retries"),
        ({"type": "task-sent", "uuid": U, "timestamp": 1, "retries": True}, "retries"),
        ({"type": "task-succeeded", "uuid": U, "timestamp": 1, "runtime": "fast"}, "runtime"),
        ({"type": "task-sent", "uuid": U, "timestamp": 1, "clock": 1.5}, "clock"),
        ({"type": "task-bogus", "timestamp": 1}, "uuid"),  # an unknown task-* type still needs a uuid
        ({"type": "", "timestamp": 1}, "empty"),
        ({"type": "worker-heartbeat", "timestamp": 1}, "hostname"),
        ({"type": "worker-heartbeat", "hostname": "w", "timestamp": 1, "freq": "2"}, "freq"),
        ({"type": 7, "timestamp": 1}, "'type'"),
    ],
)
def test_bad_input_is_invalid_with_a_reason_never_an_exception(body, reason):
    result = parse_event(body)
    assert isinstance(result, Invalid)
    assert reason in result.reason


def test_tracker_reports_invalid_and_keeps_going():
    t = Tracker()
    bad = t.feed([{"type": "task-sent"}, received(1), 42])
    assert len(bad) == 2 and len(t.tasks) == 1


# -- workers -------------------------------------------------------------------------------
def wev(type_, ts, **fields):
    body = {"type": type_, "hostname": "w1@h", "pid": 1, "clock": next(_clock), "timestamp": ts, "freq": 2.0, "active": 0, "processed": 0}
    body.update(fields)
    return body


def worker(events, now=None):
    t = Tracker()
    for body in events:
        assert not t.feed(body)
    return list(t.worker_records(now))[0]


def test_worker_online_heartbeat_offline():
    assert worker([wev("worker-online", 1)], now=1)["state"] == "ONLINE"
    assert worker([wev("worker-online", 1), wev("worker-heartbeat", 3)], now=3)["state"] == "HEARTBEAT"
    r = worker([wev("worker-online", 1), wev("worker-heartbeat", 3), wev("worker-offline", 4)], now=100)
    assert (r["state"], r["offline_reason"]) == ("OFFLINE", "left")


def test_worker_heartbeat_expired_after_factor_times_freq():
    events = [wev("worker-online", 1), wev("worker-heartbeat", 3, processed=5, active=1)]
    assert worker(events, now=3 + 4.0)["state"] == "HEARTBEAT"  # exactly 2 x freq: not yet
    r = worker(events, now=3 + 4.01)
    assert (r["state"], r["offline_reason"], r["processed"], r["active"]) == ("OFFLINE", "heartbeat-expired", 5, 1)


def test_worker_back_after_leaving():
    r = worker([wev("worker-online", 1), wev("worker-offline", 2), wev("worker-online", 10), wev("worker-heartbeat", 12)], now=12)
    assert r["state"] == "HEARTBEAT"


def test_worker_record_is_order_independent():
    events = [wev("worker-online", 1), wev("worker-heartbeat", 3), wev("worker-heartbeat", 5), wev("worker-offline", 6)]
    assert worker(events, now=7) == worker(list(reversed(events)) + events, now=7)


def test_derive_worker_without_now_judges_only_events():
    t = Tracker()
    t.feed(wev("worker-online", 1))
    state = next(iter(t.workers.values()))
    assert derive_worker(state, None)["state"] == "ONLINE"


def test_state_survives_a_json_round_trip_like_the_table_changelog():
    import json

    events = [sent(1), received(2), ev("task-started", 3)]
    state = None
    for body in events[:2]:
        state, _ = fold_task(state, parse_event(body))
    state = json.loads(json.dumps(state))  # as recovered from Kafka
    state, changed = fold_task(state, parse_event(events[0]))
    assert not changed  # the recovered entries still deduplicate
    state, changed = fold_task(state, parse_event(events[2]))
    assert changed and derive_task(state)["state"] == "STARTED" and derive_task(state)["events_count"] == 3


def test_a_huge_exception_is_kept_cut_in_the_record_whole_in_the_raw_event():
    """A record, its table value and changelog must fit a Kafka record: a 1.2 MB exception (a real
    Celery task failing with a large message) once made the record too large to send."""
    from streams.engine.events import MAX_FIELD_CHARS

    body = {"type": "task-failed", "uuid": U, "hostname": "w@h", "timestamp": 2.0, "exception": "E('" + "x" * 1_200_000 + "')"}
    tracker = Tracker()
    tracker.add(parse_event({"type": "task-received", "uuid": U, "hostname": "w@h", "timestamp": 1.0, "name": "t"}))
    tracker.add(parse_event(body))
    [record] = list(tracker.task_records())
    assert record["state"] == "FAILED" and record["exception_type"] == "E"
    assert MAX_FIELD_CHARS < len(record["exception"]) < MAX_FIELD_CHARS + 100 and "more characters in the raw event" in record["exception"]
    assert len(body["exception"]) == 1_200_005  # the caller's body is not changed


def test_exception_type_reads_only_a_wrappers_first_arguments():
    # 100k escaped quotes: scanning them all was quadratic (minutes of a stalled streams worker)
    assert exception_type("UnpickleableExceptionWrapper(" + "\\'" * 100_000, None) is None
    assert exception_type("UnpickleableExceptionWrapper('mod', 'Boom', ('x',), \"Boom('x')\")", None) == "Boom"
