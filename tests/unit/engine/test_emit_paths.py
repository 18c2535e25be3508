"""Every emit path of Celery 5.7 (docs/state-rules.md, "Emit paths"): the record the engine gives.

The inputs are tests/fixtures/celery-emit-paths/<path>.jsonl: raw broker messages from real
prefork workers on RabbitMQ (capture.py), or, where index.json says ``"source": "generated"``,
derived by hand from the Celery code (generate.py). Every expectation is what a Celery user
expects; where the events cannot support the truth, the entry names the finding (F1...) of
docs/emit-paths.md. Each capture is replayed in file order, then as shuffled sets with duplicates,
message by message and event by event.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.engine import Tracker

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "celery-emit-paths"
INDEX = json.loads((FIXTURES / "index.json").read_text())["paths"]
FIELDS = ("state", "retries", "worker", "revocation_reason", "signum", "rejection", "requeues", "exception_type")
ANY = object()  # not asserted: the rules do not say
FIRST, SECOND = "first worker", "second worker"  # the path's workers, by start order


def rec(state, retries=0, *, worker=FIRST, revocation_reason=None, signum=None, rejection=None, requeues=0, exception_type=None):
    return {
        "state": state, "retries": retries, "worker": worker, "revocation_reason": revocation_reason, "signum": signum,
        "rejection": rejection, "requeues": requeues, "exception_type": exception_type,
    }  # fmt: skip


REVOKED = lambda reason, signum=None, **kw: rec("REVOKED", revocation_reason=reason, signum=signum, **kw)  # noqa: E731

# (path, task label) -> the record's fields.
EXPECTED = {
    ("success", "a"): rec("SUCCEEDED"),
    ("success", "b"): rec("SUCCEEDED"),
    ("failure", "a"): rec("FAILED", exception_type="ValueError"),
    # F1: received(n+1) is emitted before retried(n), and attempt n's started may come after
    # received(n+1) on the same host; retries are still the attempts Celery made.
    ("retry", "recovered"): rec("RECOVERED", 2, exception_type="RuntimeError"),
    ("retry", "exhausted"): rec("CRITICAL", 1, exception_type="RuntimeError"),
    ("autoretry", "recovered"): rec("RECOVERED", 1, exception_type="KeyError"),
    ("autoretry", "exhausted"): rec("CRITICAL", 2, exception_type="KeyError"),
    # F5: no event ends the task (the message was acked when it started): STARTED for ever.
    ("reject_requeue", "a"): rec("STARTED"),
    ("reject_requeue_acks_late", "a"): rec("SUCCEEDED", rejection="requeued", requeues=1),
    # F3: the task's own Reject(requeue=False) is REJECTED(ignored) with or without acks_late
    # (without it the message was acked already and only task-failed{Reject} says so).
    ("reject_drop", "a"): rec("REJECTED", rejection="ignored", exception_type="Reject"),
    ("reject_drop_acks_late", "a"): rec("REJECTED", rejection="ignored", exception_type="Reject"),
    ("ignore", "a"): rec("STARTED"),  # F5
    ("revoke_eta", "a"): REVOKED("revoked"),
    # F4: RabbitMQ drops the expired message (per-message TTL): only task-sent, QUEUED for ever.
    ("expired_in_broker", "a"): rec("QUEUED", worker=None),
    ("expired_at_receipt", "target"): REVOKED("expired"),
    ("expired_at_receipt", "blocker"): rec("SUCCEEDED"),
    ("expired_while_reserved", "target"): REVOKED("expired"),
    ("expired_while_reserved", "blocker"): rec("SUCCEEDED"),
    ("expired_waiting_eta", "a"): REVOKED("expired"),
    ("revoke_before_receipt", "target"): REVOKED("revoked"),
    ("revoke_before_receipt", "blocker"): rec("SUCCEEDED"),
    ("revoke_terminate_sigterm", "a"): REVOKED("terminated", 15),
    ("revoke_terminate_sigkill", "a"): REVOKED("terminated", 9),
    ("revoke_terminate_before_start", "target"): REVOKED("revoked"),  # the events carry no "terminated"
    ("revoke_terminate_before_start", "blocker"): rec("SUCCEEDED"),
    ("soft_time_limit", "caught"): rec("SUCCEEDED"),
    ("soft_time_limit", "uncaught"): rec("FAILED", exception_type="SoftTimeLimitExceeded"),
    ("hard_time_limit", "a"): rec("FAILED", exception_type="TimeLimitExceeded"),
    ("worker_lost", "a"): rec("FAILED", exception_type="WorkerLostError"),
    ("worker_lost_reject", "a"): rec("SUCCEEDED", rejection="requeued", requeues=1),
    ("worker_lost_retry", "retried"): rec("RECOVERED", 1, exception_type="WorkerLostError"),
    ("worker_lost_retry", "exhausted"): rec("FAILED", exception_type="WorkerLostError"),
    ("acks_late_failure_not_acked", "a"): rec("FAILED", rejection="ignored", exception_type="ValueError"),
    # The failed delivery was requeued and the redelivery succeeded (F2 is about the moment between).
    ("acks_late_time_limit_not_acked", "a"): rec("SUCCEEDED", rejection="requeued", requeues=1, exception_type=ANY),
    # F6: the task-cancelled Celery creates here is never published.
    ("connection_loss_cancel", "a"): rec("SUCCEEDED"),
    ("connection_loss_cancel_delivered", "a"): rec("SUCCEEDED"),
    ("success_stored_before_lost", "a"): rec("SUCCEEDED"),
    # F7: RETRY, but this message was acked at start: nothing will run it again.
    ("cold_shutdown", "a"): rec("RETRY"),
    ("cold_shutdown_acks_late", "a"): rec("SUCCEEDED", worker=SECOND),
    # Generated: what 5.3-5.6 workers emit on the paths 5.7 changed.
    ("reject_drop_celery53to56", "a"): rec("STARTED"),  # F5
    ("reject_drop_acks_late_celery53to56", "a"): rec("REJECTED", rejection="ignored"),
    ("hard_time_limit_celery53to56", "a"): rec("FAILED", exception_type="TimeLimitExceeded"),
    ("acks_late_time_limit_not_acked_celery55to56", "a"): rec("SUCCEEDED", rejection="requeued", requeues=1),
    ("acks_late_time_limit_not_acked_celery53to54", "a"): rec("FAILED", rejection="ignored", exception_type="TimeLimitExceeded"),
}

# (path, task label, the event the replay stops after: (type, n-th of that type for the task)) ->
# the record at that moment. Replayed in file order, event by event.
MIDWAY = {
    # attempt 1 is waiting for its countdown; its received came before attempt 0's retried, so it
    # is RECEIVED (as issue 12 case 3 says), with the retry's exception
    ("retry", "recovered", ("task-retried", 1)): rec("RECEIVED", 1, exception_type="RuntimeError"),
    ("worker_lost_retry", "retried", ("task-retried", 1)): rec("RETRY", 1, exception_type="WorkerLostError"),
    ("worker_lost_reject", "a", ("task-rejected", 1)): rec("REJECTED", rejection="requeued", requeues=1),
    # F2: the message is requeued and will run again: the task-failed of that delivery is not its end.
    ("acks_late_time_limit_not_acked", "a", ("task-failed", 1)): rec(
        "REJECTED", rejection="requeued", requeues=1, exception_type="TimeLimitExceeded"
    ),
    ("connection_loss_cancel_delivered", "a", ("task-cancelled", 1)): rec("RETRY"),
    ("cold_shutdown_acks_late", "a", ("task-cancelled", 1)): rec("RETRY"),
}


def lines(path: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / INDEX[path]["file"]).read_text().splitlines() if line.strip()]


def single_events(records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        body = record["body"]
        out.extend(body if isinstance(body, list) else [body])
    return out


def workers(path: str) -> dict[str, str]:
    """The path's workers by start order: the second one's hostname ends in ``-b@host``."""
    names = INDEX[path]["workers"]
    second = [h for h in names if h.split("@")[0].endswith("-b")]
    first = [h for h in names if h not in second]
    assert len(first) == 1 and len(second) <= 1, names
    return {FIRST: first[0], SECOND: second[0] if second else None, None: None}


def replay(values) -> dict[str, dict]:
    tracker = Tracker()
    for value in values:
        assert not tracker.feed(value), value
    return {r["uuid"]: r for r in tracker.task_records()}


def check(path: str, label: str, records: dict[str, dict], expected: dict) -> None:
    r = records[INDEX[path]["tasks"][label]]
    want = {f: (workers(path)[v] if f == "worker" else v) for f, v in expected.items() if v is not ANY}
    got = {f: r[f] for f in want}
    assert got == want, (path, label, {f: (got[f], want[f]) for f in want if got[f] != want[f]})


def test_every_path_and_task_has_an_expectation():
    assert {(p, label) for p, e in INDEX.items() for label in e["tasks"]} == set(EXPECTED)


def test_generated_paths_are_marked():
    generated = {p for p, e in INDEX.items() if e["source"] == "generated"}
    assert generated == {p for p in INDEX if p.endswith(("_celery53to56", "_celery53to54", "_celery55to56", "_delivered"))}
    assert all(INDEX[p]["derived_from"] in INDEX for p in generated)


@pytest.mark.parametrize("path,label", sorted(EXPECTED))
def test_final_record_in_file_order(path, label):
    check(path, label, replay(lines(path)), EXPECTED[(path, label)])


@pytest.mark.parametrize("path", sorted(INDEX))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_final_record_in_any_order_with_duplicates(path, data):
    for units in (lines(path), single_events(lines(path))):  # whole messages, then single events
        extra = data.draw(st.lists(st.sampled_from(units), max_size=len(units)))
        records = replay(data.draw(st.permutations(units + extra)))
        for label in INDEX[path]["tasks"]:
            check(path, label, records, EXPECTED[(path, label)])


def _midway(path, label, stop):
    type_, n = stop
    uuid = INDEX[path]["tasks"][label]
    events, seen = [], 0
    for event in single_events(lines(path)):
        events.append(event)
        if event.get("uuid") == uuid and event.get("type") == type_:
            seen += 1
            if seen == n:
                return events
    raise AssertionError(f"{path}: no {type_} #{n} for {label}")


MIDWAY_IDS = [f"{p}-{label}-after-{t}#{n}" for p, label, (t, n) in sorted(MIDWAY)]


@pytest.mark.parametrize("path,label,stop", sorted(MIDWAY), ids=MIDWAY_IDS)
def test_record_midway(path, label, stop):
    check(path, label, replay(_midway(path, label, stop)), MIDWAY[(path, label, stop)])


@pytest.mark.parametrize("path,label,stop", sorted(MIDWAY), ids=MIDWAY_IDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_record_midway_in_any_order(path, label, stop, data):
    events = _midway(path, label, stop)
    extra = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    check(path, label, replay(data.draw(st.permutations(events + extra))), MIDWAY[(path, label, stop)])
