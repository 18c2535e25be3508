"""Badges and tags as Leek shows them, from the engine's records of the real captures."""

import pytest

from streams.engine import Tracker
from streams.ui.badges import TASK_TAGS, ordinal, task_badge, task_fields, worker_badge


@pytest.fixture(scope="module")
def records(scenario_events):
    tracker = Tracker()
    for event in scenario_events:
        tracker.feed(event, "fx")
    return {r["uuid"]: r for r in tracker.task_records()}


@pytest.mark.parametrize(
    "scenario, label, colour",
    [
        ("succeed", "SUCCEEDED", "blue"),
        ("fail", "FAILED", "red"),
        ("recovered_retry", "RECOVERED after 2 retries", "purple"),
        ("recovered_autoretry", "RECOVERED after 1 retry", "purple"),
        ("critical_retry_exc", "CRITICAL after 2 retries", "volcano"),
        ("expired_past", "REVOKED E", "magenta"),
        ("revoked_terminate_term", "REVOKED T SIGTERM", "magenta"),
        ("revoked_terminate_kill", "REVOKED T SIGKILL", "magenta"),
        ("revoked_eta_plain", "REVOKED", "magenta"),
    ],
)
def test_badges_of_the_captured_scenarios(records, scenario_ids, scenario, label, colour):
    badge = task_badge(records[scenario_ids[scenario][0]])
    assert (badge.label, badge.colour) == (label, colour)


def test_tags_of_states_the_captures_end_elsewhere():
    assert task_badge({"state": "REJECTED", "rejection": "ignored"}).label == "REJECTED I"
    assert task_badge({"state": "REJECTED", "rejection": "requeued", "requeues": 2}).label == "REJECTED Q ×2"
    assert task_badge({"state": "RETRY", "retries": 1}).label == "RETRY waiting to retry for the 1st time"
    assert task_badge({"state": "RETRY", "retries": 3}).label == "RETRY waiting to retry for the 3rd time"
    assert task_badge({"state": "RECEIVED", "retries": 0}).label == "RECEIVED"
    assert task_badge({"state": "RECEIVED", "retries": 1}).label == "RECEIVED after 1 failed execution"
    assert task_badge({"state": "RECEIVED", "retries": 2}).label == "RECEIVED after 2 failed executions"
    assert task_badge({"state": "REVOKED", "revocation_reason": "terminated", "signum": 99}).label == "REVOKED T signal 99"
    assert task_badge({"state": "SUCCEEDED", "retries": 0}).label == "SUCCEEDED"


def test_fields_the_engine_adds_show_when_present_and_cost_one_line():
    assert task_badge({"state": "STARTED", "orphaned_at": 1795487000.0}).label == "STARTED orphaned"
    assert task_badge({"state": "RECEIVED", "retries": 0, "cancels": 1}).label == "RECEIVED cancelled ×1"
    assert task_badge({"state": "STARTED"}).label == "STARTED"  # column not there yet: nothing shown
    assert {"orphaned_at", "cancels", "rejection", "revocation_reason", "signum", "requeues"} <= set(task_fields())
    assert len(TASK_TAGS) == len({(r.states, r.field) for r in TASK_TAGS})


def test_worker_badges():
    assert worker_badge({"state": "OFFLINE", "offline_reason": "heartbeat-expired"}).label == "OFFLINE heartbeat-expired"
    assert worker_badge({"state": "HEARTBEAT", "skew": 0.2}).label == "HEARTBEAT"
    assert worker_badge({"state": "HEARTBEAT", "skew": -20.04}).label == "HEARTBEAT clock -20.0 s"
    assert worker_badge({"state": "ONLINE"}).colour == "gold"


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]  # fmt: skip
