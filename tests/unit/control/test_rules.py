"""Task control's eligibility rules and argument parsing (pure)."""

from __future__ import annotations

import pytest
from celery.utils.saferepr import saferepr

from streams.control import rules
from streams.control.rules import Options, parse_literal, retry_message, verdict


def task(**fields) -> dict:
    base = {"cluster": "c", "uuid": "u-1", "name": "proj.add", "state": "FAILED", "args": "(1, 2)", "kwargs": "{'a': 'b'}",
            "queue": "celery", "exchange": "", "routing_key": "celery", "root_id": "r-0", "parent_id": None}  # fmt: skip
    return {**base, **fields}


@pytest.mark.parametrize("state", ["QUEUED", "RECEIVED", "RETRY"])
def test_revoke_takes_tasks_not_started(state):
    assert verdict("revoke", task(state=state)).eligible


@pytest.mark.parametrize("state, reason", [("STARTED", "running"), ("SUCCEEDED", "already finished"), ("REVOKED", "already finished")])
def test_revoke_refuses_running_and_finished(state, reason):
    found = verdict("revoke", task(state=state))
    assert not found.eligible and reason in found.reason


def test_terminate_takes_running_and_waiting_with_a_known_signal():
    assert verdict("terminate", task(state="STARTED")).eligible
    assert verdict("terminate", task(state="RECEIVED")).eligible
    assert not verdict("terminate", task(state="FAILED")).eligible
    assert "signal" in verdict("terminate", task(state="STARTED"), Options(signal="SIGSTOP")).reason


@pytest.mark.parametrize("state", ["FAILED", "CRITICAL", "REJECTED", "REVOKED"])
def test_retry_takes_finished_failures(state):
    assert verdict("retry", task(state=state)).eligible


@pytest.mark.parametrize("state", ["SUCCEEDED", "RECOVERED", "STARTED", "QUEUED", "RETRY"])
def test_retry_refuses_the_rest(state):
    assert not verdict("retry", task(state=state)).eligible


def test_retry_once():
    found = verdict("retry", task(), retried_as="u-2")
    assert not found.eligible and "already retried" in found.reason


def test_celery_own_tasks_expired_ones_and_the_allowlist():
    assert "celery.*" in verdict("retry", task(name="celery.chord_unlock")).reason
    assert "expired" in verdict("retry", task(state="REVOKED", revocation_reason="expired")).reason
    assert verdict("retry", task(state="REVOKED", revocation_reason="terminated")).eligible
    assert verdict("retry", task(name="proj.add"), retry_tasks=("proj.*",)).eligible
    assert "CONTROL_RETRY_TASKS" in verdict("retry", task(name="other.add"), retry_tasks=("proj.*",)).reason


@pytest.mark.parametrize("args", [
    ("C:\\temp\\new",),                  # backslashes saferepr does not escape: would be sent as tab/newline
    ("\\x41\\u0042",),
    ("\\', \"X\", 7) #",),               # one argument that parses as three
    ("line\nbreak",),
    ("it's",),
])
def test_text_that_parses_to_other_values_is_refused(args):
    """Celery's saferepr quotes without escaping backslashes, newlines or '#': its text can parse
    to different values or more arguments. Only a round trip (saferepr of the value == the text) is trusted."""
    text = saferepr(args, 1024)
    parsed, reason = parse_literal(text, tuple)
    assert parsed is None or parsed == list(args), (text, parsed)  # refused, or exactly the original
    assert parsed is not None or reason


def test_kwargs_injection_is_refused():
    text = saferepr({"to": "\\', \"is_admin\": True} #"}, 1024)
    parsed, _ = parse_literal(text, dict)
    assert parsed is None


def test_no_broker_for_the_cluster():
    assert "no broker" in verdict("retry", task(), has_broker=False).reason


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/pwned')",
    "(open('/etc/passwd').read(),)",
    "(lambda: 1)()",
    "[x for x in range(10**9)]",
    "(1, datetime.datetime(2024, 1, 1))",
    "sha256:" + "0" * 64,
    "<object at 0x7f>",
    "([" + "[" * 200 + "]" * 200 + "],)",
    "(" + "[" * 100000 + ")",
])
def test_hostile_or_non_literal_text_is_never_evaluated(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value, reason = parse_literal(text, tuple)
    assert value is None and reason
    assert not verdict("retry", task(args=text)).eligible
    assert not (tmp_path / "pwned").exists()


def test_cut_arguments_are_refused():
    """Celery's saferepr (argsrepr_maxsize=1024) marks a cut with '...': inside a string, as an
    Ellipsis, or past its nesting depth."""
    for value in [("x" * 2000,), tuple(range(1000)), {"k": "y" * 3000}, ([1, [2, [3, [4, [5]]]]],)]:
        text = saferepr(value, 1024)
        parsed, reason = parse_literal(text, dict if isinstance(value, dict) else tuple)
        assert parsed is None and "cut" in reason, text[-80:]


def test_complete_arguments_round_trip():
    value = (1, "two", [3.5, None, True], {"k": "v", "n": [1, 2]}, "x" * 900)
    parsed, reason = parse_literal(saferepr(value, 1024), tuple)
    assert reason == "" and parsed == list(value)


@pytest.mark.parametrize("text, problem", [("(b'x',)", "bytes"), ("({1, 2},)", "set"), ("(1j,)", "complex"), ("({1: 2},)", "key"),
                                           ("(float('nan'),)", "not a Python literal")])  # fmt: skip
def test_values_json_cannot_carry_are_refused(text, problem):
    _, reason = parse_literal(text, tuple)
    assert problem in reason


def test_unknown_args_and_wrong_shapes():
    assert "unknown" in parse_literal(None, tuple)[1]
    assert "not a tuple" in parse_literal("'abc'", tuple)[1]
    assert "not a dict" in parse_literal("[1]", dict)[1]


def test_routing_from_task_sent_else_the_requests_queue():
    assert rules.routing(task()) == {"queue": "celery", "exchange": "", "routing_key": "celery"}
    bare = task(queue=None, exchange=None, routing_key=None)
    assert rules.routing(bare) == {}
    assert "routing unknown" in verdict("retry", bare).reason
    assert verdict("retry", bare, Options(queue="q1")).eligible
    assert rules.routing(bare, Options(queue="q1")) == {"queue": "q1"}


def test_retry_message_links_the_copy_to_the_original():
    message = retry_message(task(), task_id="new-1")
    assert message.send_task_kwargs() == {
        "args": [1, 2], "kwargs": {"a": "b"}, "task_id": "new-1", "root_id": "r-0", "parent_id": "u-1",
        "headers": {"celery_monitor_retry_of": "u-1"}, "queue": "celery", "exchange": "", "routing_key": "celery",
    }  # fmt: skip
    assert retry_message(task(root_id=None), task_id="n").root_id == "u-1"
    with pytest.raises(ValueError):
        retry_message(task(state="SUCCEEDED"))
