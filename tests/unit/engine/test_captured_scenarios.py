"""The real captures (celery 5.7, Redis, prefork): the final record of every scenario.

Expectations are derived from the rules (docs/state-rules.md) and from what the events say.
"""

import pytest

from streams.engine import Tracker

# scenario -> (state, retries, extra fields)
EXPECTED = {
    "succeed": ("SUCCEEDED", 0, {"result": "5"}),
    "fail": ("FAILED", 0, {"exception_type": "ValueError"}),
    "recovered_retry": ("RECOVERED", 2, {"result": "'ok on try 3'"}),
    "recovered_autoretry": ("RECOVERED", 1, {}),
    "critical_retry_exc": ("CRITICAL", 2, {"exception_type": "RuntimeError"}),
    "critical_retry_noexc": ("CRITICAL", 2, {"exception_type": "MaxRetriesExceededError"}),
    "critical_autoretry": ("CRITICAL", 2, {"exception_type": "KeyError"}),
    "expired_past": ("REVOKED", 0, {"revocation_reason": "expired", "signum": None}),
    "expired_eta": ("REVOKED", 0, {"revocation_reason": "expired"}),
    "expired_in_queue": ("REVOKED", 0, {"revocation_reason": "expired"}),
    "busy_filler": ("SUCCEEDED", 0, {}),
    "revoked_terminate_term": ("REVOKED", 0, {"revocation_reason": "terminated", "signum": 15}),
    "revoked_terminate_kill": ("REVOKED", 0, {"revocation_reason": "terminated", "signum": 9}),
    "revoked_eta_plain": ("REVOKED", 0, {"revocation_reason": "revoked"}),
    # Reject(requeue=False) without acks_late emits only task-failed (the message was acked
    # already): still the task's own Reject, so REJECTED(ignored) -- docs/state-rules.md.
    "reject_drop": ("REJECTED", 0, {"exception_type": "Reject", "rejection": "ignored"}),
    "reject_requeue": ("SUCCEEDED", 0, {"rejection": "requeued", "requeues": 2}),
    "eta_countdown": ("SUCCEEDED", 0, {}),
    "eta_abs": ("SUCCEEDED", 0, {}),
    "hard_time_limit": ("FAILED", 0, {"exception_type": "TimeLimitExceeded", "exception": "ExceptionWithTraceback()"}),
    "soft_time_limit": ("FAILED", 0, {"exception_type": "SoftTimeLimitExceeded"}),
    "worker_lost": ("FAILED", 0, {"exception_type": "WorkerLostError"}),
    "unregistered": ("FAILED", 0, {"exception_type": "NotRegistered", "received_at": None}),
    "chain": ("SUCCEEDED", 0, {}),
    "reject_drop_acks_late": ("REJECTED", 0, {"rejection": "ignored", "exception_type": "Reject"}),
    "busy_filler2": ("SUCCEEDED", 0, {}),
    "revoked_reserved_terminate": ("REVOKED", 0, {"revocation_reason": "revoked", "signum": None}),
}


@pytest.fixture(scope="module", params=["handler", "raw"])
def records(request, scenario_events, scenario_raw):
    tracker = Tracker()
    for value in scenario_events if request.param == "handler" else scenario_raw:
        assert not tracker.feed(value)
    return {r["uuid"]: r for r in tracker.task_records()}


def test_every_scenario_is_covered(scenario_ids):
    assert set(scenario_ids) == set(EXPECTED)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_final_record(records, scenario_ids, scenario):
    state, retries, extra = EXPECTED[scenario]
    for uuid in scenario_ids[scenario]:
        r = records[uuid]
        assert (r["state"], r["retries"]) == (state, retries), r
        for field, value in extra.items():
            assert r[field] == value, (field, r)


def test_hard_time_limit_duplicate_failed_are_two_distinct_events(records, scenario_ids):
    r = records[scenario_ids["hard_time_limit"][0]]
    assert r["events_count"] == 5  # sent, received, started, 2 x failed (different clocks)


def test_chain_links(records, scenario_ids):
    root, middle, last = scenario_ids["chain"]
    assert records[last]["root_id"] == root and records[last]["parent_id"] == middle


def test_workers_from_captures(scenario_events):
    tracker = Tracker()
    for value in scenario_events:
        tracker.feed(value)
    (w1,) = tracker.worker_records()
    assert (w1["hostname"], w1["state"], w1["offline_reason"]) == ("w1@vm", "OFFLINE", "left")
