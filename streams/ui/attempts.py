"""A task's raw events grouped into attempts and deliveries, for the task page's timeline.

The grouping is the engine's (``streams.engine.task_deliveries``: each host's timeline on its
own clock, the rules of docs/state-rules.md, "Attempts and deliveries"), so the page shows the
attempts the task's record was derived from. This module only maps the engine's deliveries back
to the stored event bodies and adds the per-delivery durations the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.engine import TaskEvent, exception_type, fold_task, parse_event, task_deliveries
from streams.engine.states import REJECT_EXCEPTION  # the task's own Reject: REJECTED, not FAILED (rule 4)

RECEIVED = "task-received"
STARTED = "task-started"
SENT = "task-sent"
ENDINGS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected", "task-revoked", "task-cancelled"})
REJECTED = "task-rejected"


@dataclass
class Attempt:
    """One delivery of one attempt: ``number`` = Celery's ``retries`` (0 = first try)."""

    number: int
    delivery: int  # 1 for the first delivery of this attempt, 2 after a requeue...
    hostname: str | None  # the worker (None: published only, no worker saw it yet)
    events: list[dict] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    number_known: bool = True  # False: its task-received never arrived; ``number`` is a lower bound

    def first(self, etype: str) -> dict | None:
        return next((e for e in self.events if e.get("type") == etype), None)

    @property
    def ending(self) -> dict | None:
        """The first event that ended this delivery (None while it runs or waits)."""
        return next((e for e in self.events if e.get("type") in ENDINGS), None)

    @property
    def outcome(self) -> tuple[str, str] | None:
        """How this delivery ended, as the page labels it: (label, event type for its colour).

        Celery sends task-failed before task-rejected when a task raises Reject; that failure is the
        task's own rejection, so the delivery shows the rejection, as the task's state does."""
        ending = self.ending
        if ending is None:
            return None
        etype = ending.get("type")
        if etype == "task-failed" and exception_type(_text(ending.get("exception")), _text(ending.get("traceback"))) == REJECT_EXCEPTION:
            ending = self.first(REJECTED) or {"type": REJECTED, "requeue": False}
            etype = REJECTED
        if etype == REJECTED:
            return f"rejected ({'requeued' if ending.get('requeue') else 'dropped'})", REJECTED
        return etype[5:], etype

    @property
    def broker_wait(self) -> float | None:
        """Seconds from task-sent to task-received (time in the broker's queue; two hosts' clocks)."""
        return _diff(self.first(SENT), self.first(RECEIVED))

    @property
    def queue_wait(self) -> float | None:
        """Seconds from task-received to task-started (the report's queue wait; ETA/countdown included)."""
        return _diff(self.first(RECEIVED), self.first(STARTED))

    @property
    def runtime(self) -> float | None:
        """Seconds the attempt ran: the worker's ``runtime`` when it sent one, else ending − started."""
        ending = self.ending
        if ending and isinstance(ending.get("runtime"), (int, float)):
            return float(ending["runtime"])
        return _diff(self.first(STARTED), ending)

    @property
    def span(self) -> tuple[float, float]:
        times = [e["timestamp"] for e in self.events]
        return (min(times), max(times)) if times else (0.0, 0.0)


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _diff(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None:
        return None
    return b["timestamp"] - a["timestamp"]


def _identity(e: dict) -> tuple:
    return e.get("type"), e.get("hostname") or "", e.get("pid") or 0, e.get("clock") or 0, float(e["timestamp"])


def group_attempts(events: list[dict]) -> list[Attempt]:
    """Events of one task (Celery's bodies; ``_received_at``, when present, is the monitor's
    receive time) -> its deliveries, ordered by attempt number then delivery. Events the engine
    cannot read are left out (they were dead-lettered); task-sent events join their attempt."""
    state = None
    bodies: dict[tuple, dict] = {}
    sent: list[dict] = []
    for body in events:
        received = body.get("_received_at")
        given = body if body.get("uuid") else {**body, "uuid": "-"}  # one task's events: the uuid is implied
        event = parse_event(given, None, float(received) if isinstance(received, (int, float)) and received else None)
        if event.__class__ is not TaskEvent:
            continue
        state, _ = fold_task(state, event)
        bodies.setdefault(_identity(body), body)
        if body.get("type") == SENT:
            sent.append(body)
    if state is None:
        return []
    groups: list[Attempt] = []
    for d in task_deliveries(state):
        number = d["attempt"]
        same = sum(1 for g in groups if g.number == number)
        group = Attempt(number, same + 1, d["worker"], number_known=d["attempt_known"])
        group.events = [bodies[_identity(e)] for e in d["events"] if _identity(e) in bodies]
        group.started = d["started_at"] is not None
        group.ended = d["ended_by"] is not None or group.ending is not None
        groups.append(group)
    for body in sorted(sent, key=lambda e: e["timestamp"]):
        number = body.get("retries") if isinstance(body.get("retries"), int) else 0
        target = next((g for g in groups if g.number == number), None)
        if target is None:
            target = Attempt(number, 1, None)
            groups.append(target)
        target.events.insert(0, body)
    for g in groups:
        g.events.sort(key=lambda e: (e["timestamp"], e.get("clock") or 0))
    return sorted(groups, key=lambda g: (g.number, g.delivery, g.span[0]))
