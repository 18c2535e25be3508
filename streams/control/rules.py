"""Which tasks an action may touch, and what a retry re-sends (pure: no broker, no ClickHouse).

A task record (a row of ``tasks``: state, name, args, kwargs, routing, root_id) and an action give
a :class:`Verdict`: eligible or not, and why not in words an operator can act on.

Arguments are re-sent only when the stored text is complete. Celery's events carry ``args`` and
``kwargs`` as ``saferepr`` text (``argsrepr``/``kwargsrepr``, cut at 1024 characters by default),
never the serialized values, so:

* the text is parsed with :func:`ast.literal_eval` only (literals: never ``eval``; a call, a name,
  an attribute is refused, so hostile text is never executed);
* a cut is refused: saferepr marks one with ``...`` -- an ``Ellipsis`` in the value (a cut list, or
  nesting past its depth) or a string ending in ``...`` (a cut string; a string that really ends in
  ``...`` is refused too, on the safe side);
* the bridge's redaction (``BRIDGE_REDACT_FIELDS``: ``sha256:`` hashes, dropped fields) leaves text
  that is not a literal, or none: refused;
* the value must be what Celery's default serializer (JSON) can send: None, bool, int, float, str,
  lists/tuples and dicts with string keys.

A task whose ``argsrepr`` was replaced by its producer (``apply_async(argsrepr=...)``) cannot be
told from one whose text is its arguments: its text is what is re-sent, when it parses.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import uuid as uuidlib
from dataclasses import dataclass, field

from celery.utils.saferepr import saferepr

from streams.engine import states as S

ACTIONS = ("revoke", "terminate", "retry")
SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGUSR1")
WAITING = frozenset({S.QUEUED, S.RECEIVED, S.RETRY})  # not running now: a plain revoke stops them
RUNNING = frozenset({S.STARTED})
RETRYABLE = frozenset({S.FAILED, S.CRITICAL, S.REJECTED, S.REVOKED})
MAX_TEXT = 20_000  # characters of argument text parsed at most (literal_eval's cost grows with it; Celery cuts at 1024)
MAX_DEPTH = 50  # nesting of a parsed value at most
CUT_MARK = "..."


@dataclass(frozen=True)
class Verdict:
    eligible: bool
    reason: str = ""  # why not (empty when eligible)


@dataclass(frozen=True)
class Options:
    """What a request may add: ``signal`` for terminate; ``queue`` for a retry whose original
    routing is unknown (Celery reports routing only in task-sent, with ``task_send_sent_event``)."""

    signal: str = "SIGTERM"
    queue: str = ""


@dataclass
class RetryMessage:
    """The arguments of Celery's ``app.send_task`` for a retried copy."""

    name: str
    args: list
    kwargs: dict
    task_id: str
    root_id: str
    parent_id: str
    routing: dict = field(default_factory=dict)  # exchange + routing_key, or queue
    headers: dict = field(default_factory=dict)

    def send_task_kwargs(self) -> dict:
        return {"args": self.args, "kwargs": self.kwargs, "task_id": self.task_id, "root_id": self.root_id,
                "parent_id": self.parent_id, "headers": self.headers, **self.routing}  # fmt: skip


class NotLiteral(ValueError):
    pass


def parse_literal(text: str | None, kind: type) -> tuple[object, str]:
    """``(value, "")`` for complete literal text of ``kind`` (tuple/list for args, dict for kwargs),
    else ``(None, reason)``. Never evaluates anything but literals."""
    what = "args" if kind is tuple else "kwargs"
    if text is None:
        return None, f"{what} unknown (no task-sent or task-received event carried them)"
    if not isinstance(text, str):
        return None, f"{what} is not text"
    if text.startswith("sha256:"):
        return None, f"{what} redacted by the bridge (hash)"
    if len(text) > MAX_TEXT:
        return None, f"{what} longer than {MAX_TEXT:,} characters"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if CUT_MARK in text:
            return None, f"{what} was cut by Celery's saferepr (argsrepr_maxsize / nesting): not complete"
        return None, f"{what} is not a Python literal (redacted, custom argsrepr, or an object repr): not re-sent"
    problem = _check(value, 0)
    if problem:
        return None, f"{what} {problem}"
    # saferepr does not escape backslashes, newlines or '#' inside quotes: text can parse to other
    # values, or more arguments, than the task had. Only text that is exactly what Celery's
    # saferepr makes of the parsed value is the value.
    if saferepr(value, 10**9) != text:
        return None, f"{what} text is not exactly Celery's repr of what it parses to (backslash, quote, '#' or a custom argsrepr): not re-sent"
    if kind is tuple:
        if not isinstance(value, (tuple, list)):
            return None, f"args is {type(value).__name__}, not a tuple or list"
        value = list(value)
    elif not isinstance(value, dict):
        return None, f"kwargs is {type(value).__name__}, not a dict"
    return value, ""


def _check(value, depth: int) -> str:
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if value is Ellipsis:
        return "was cut by Celery's saferepr (argsrepr_maxsize / nesting): not complete"
    if value is None or isinstance(value, (bool, int)):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "holds a non-finite float (JSON cannot carry it)"
    if isinstance(value, str):
        return "may be cut: a string ends in '...', Celery's saferepr mark of a cut" if value.endswith(CUT_MARK) else ""
    if isinstance(value, (list, tuple)):
        return next((p for p in (_check(v, depth + 1) for v in value) if p), "")
    if isinstance(value, dict):
        if any(not isinstance(k, str) for k in value):
            return "has a key that is not a string (JSON cannot carry it)"
        return next((p for p in (_check(v, depth + 1) for v in value.values()) if p), "")
    return f"holds a {type(value).__name__} (Celery's JSON serializer cannot send it)"


def retry_allowed(name: str, retry_tasks: tuple[str, ...] = ()) -> bool:
    """CONTROL_RETRY_TASKS (globs) when set; else any name but Celery's own (``celery.*``:
    chord_unlock, backend_cleanup... are sent by Celery itself, never by hand)."""
    if retry_tasks:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in retry_tasks)
    return not name.startswith("celery.")


def verdict(action: str, record: dict, options: Options = Options(), retried_as: str = "", has_broker: bool = True,
            retry_tasks: tuple[str, ...] = ()) -> Verdict:  # fmt: skip
    """May ``action`` touch this task? ``retried_as``: the copy an earlier retry sent (a task is
    retried once: a second run of the same selection must not send it again)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    state = record.get("state") or ""
    if not has_broker:
        return Verdict(False, f"no broker configured for cluster {record.get('cluster')!r} (celery-monitor control --config)")
    if action == "revoke":
        if state in WAITING:
            return Verdict(True)
        if state in RUNNING:
            return Verdict(False, "running: a plain revoke does not stop a started task (use terminate)")
        return Verdict(False, f"already finished ({state})")
    if action == "terminate":
        if options.signal not in SIGNALS:
            return Verdict(False, f"signal {options.signal!r} is not one of {', '.join(SIGNALS)}")
        if state in RUNNING or state in WAITING:
            return Verdict(True)
        return Verdict(False, f"already finished ({state})")
    # retry
    if state not in RETRYABLE:
        return Verdict(False, f"{state or 'unknown state'}: only {', '.join(sorted(RETRYABLE))} tasks are retried")
    if retried_as:
        return Verdict(False, "already retried (the copy: the audit, or this task's page)")
    if state == S.REVOKED and record.get("revocation_reason") == "expired":
        return Verdict(False, "expired (its expires time passed): a copy would run late")
    name = record.get("name")
    if not name:
        return Verdict(False, "task name unknown")
    if not retry_allowed(name, retry_tasks):
        return Verdict(False, f"task name not retryable ({'CONTROL_RETRY_TASKS' if retry_tasks else 'Celery’s own celery.* tasks'})")
    for text, kind in ((record.get("args"), tuple), (record.get("kwargs"), dict)):
        _, reason = parse_literal(text, kind)
        if reason:
            return Verdict(False, reason)
    if not routing(record, options):
        return Verdict(False, "routing unknown (Celery reports exchange/routing key only in task-sent: task_send_sent_event); "
                              "give a queue to retry it")  # fmt: skip
    return Verdict(True)


def routing(record: dict, options: Options = Options()) -> dict:
    """Where the copy goes: the original queue, exchange and routing key as task-sent reported
    them, else the request's queue; {} when none is known."""
    out = {}
    if record.get("queue"):
        out["queue"] = record["queue"]
    if record.get("routing_key") is not None and record.get("exchange") is not None:
        out.update(exchange=record["exchange"], routing_key=record["routing_key"])
    if not out and options.queue:
        out["queue"] = options.queue
    return out


def retry_message(record: dict, options: Options = Options(), task_id: str | None = None, retry_tasks: tuple[str, ...] = ()) -> RetryMessage:
    """The copy of an eligible task: its name, args, kwargs and routing, a new id, ``parent_id``
    = the original (the link the task list shows), ``root_id`` kept, and a header naming the
    original (``celery_monitor_retry_of``). Raises ValueError when the task is not eligible."""
    found = verdict("retry", record, options, retry_tasks=retry_tasks)
    if not found.eligible:
        raise ValueError(found.reason)
    args, _ = parse_literal(record.get("args"), tuple)
    kwargs, _ = parse_literal(record.get("kwargs"), dict)
    original = record["uuid"]
    return RetryMessage(
        name=record["name"], args=args, kwargs=kwargs, task_id=task_id or str(uuidlib.uuid4()),
        root_id=record.get("root_id") or original, parent_id=original, routing=routing(record, options),
        headers={"celery_monitor_retry_of": original},
    )  # fmt: skip
