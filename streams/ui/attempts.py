"""A task's raw events grouped into attempts and deliveries, for the task page's timeline.

FUTURE HOME: ``streams.engine`` (issue 12 adds a pure function that groups a task's events into
attempts/deliveries with the engine's own rules). When it exists, ``group_attempts`` below is
replaced by a call to it; the task page only reads ``Attempt``'s fields.

Rules used here (docs/state-rules.md; environment notes on real Celery orders):

* every ``task-received`` opens a delivery: attempt number = its ``retries`` (0-based), on its
  ``hostname``. A requeued delivery (task-rejected requeue=true) is received again with the same
  ``retries``: same attempt number, next delivery number.
* worker-side events of one host are matched to that host's open deliveries in order:
  ``task-started`` goes to the oldest delivery not yet started; an ending event (succeeded, failed,
  retried, rejected, revoked, cancelled) to the oldest started one still open. This is what keeps
  the real order "received(n+1) before retried(n)" right: the retry ends attempt n, not n+1.
  A second ending of a delivery that already ended (two task-failed of a hard time limit;
  task-failed then task-rejected under acks_late) stays with that delivery.
* ``task-sent`` (the client's, or a retrying pool child's) belongs to the attempt of its
  ``retries``; a revoke with no delivery (expired before any worker received it) is a
  delivery of its own on the revoking worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECEIVED = "task-received"
STARTED = "task-started"
SENT = "task-sent"
ENDINGS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected", "task-revoked", "task-cancelled"})


@dataclass
class Attempt:
    """One delivery of one attempt: ``number`` = Celery's ``retries`` (0 = first try)."""

    number: int
    delivery: int  # 1 for the first delivery of this attempt, 2 after a requeue...
    hostname: str | None  # the worker (None: published only, no worker saw it yet)
    events: list[dict] = field(default_factory=list)
    started: bool = False
    ended: bool = False

    def first(self, etype: str) -> dict | None:
        return next((e for e in self.events if e.get("type") == etype), None)

    @property
    def ending(self) -> dict | None:
        """The first event that ended this delivery (None while it runs or waits)."""
        return next((e for e in self.events if e.get("type") in ENDINGS), None)

    @property
    def broker_wait(self) -> float | None:
        """Seconds from task-sent to task-received (time in the broker's queue)."""
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
        return min(times), max(times)


def _diff(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None:
        return None
    return b["timestamp"] - a["timestamp"]


def _retries(event: dict) -> int:
    value = event.get("retries")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _order(event: dict) -> tuple:
    clock = event.get("clock")
    return (event.get("timestamp") or 0.0, clock if isinstance(clock, int) else 0, event.get("type") or "")


def group_attempts(events: list[dict]) -> list[Attempt]:
    """Events of one task (Celery's bodies: type, hostname, timestamp, clock, retries...) ->
    its deliveries, ordered by attempt number then delivery. Events are not modified; an event
    without a usable ``timestamp`` is skipped (the engine dead-letters those anyway)."""
    ordered = sorted((e for e in events if isinstance(e.get("timestamp"), (int, float))), key=_order)
    deliveries: list[Attempt] = []
    sent: list[dict] = []
    for event in ordered:
        etype = event.get("type")
        host = event.get("hostname")
        if etype == SENT:
            sent.append(event)
            continue
        if etype == RECEIVED:
            number = _retries(event)
            same = sum(1 for d in deliveries if d.number == number)
            deliveries.append(Attempt(number, same + 1, host, [event]))
            continue
        on_host = [d for d in deliveries if d.hostname == host]
        if etype == STARTED:
            target = next((d for d in on_host if not d.started and not d.ended), None)
            target = target or next((d for d in on_host if not d.ended), None) or (on_host[-1] if on_host else None)
            if target is None:
                target = _orphan(deliveries, host)
            target.started = True
        elif etype in ENDINGS:
            target = next((d for d in on_host if d.started and not d.ended), None)
            target = target or next((d for d in on_host if not d.ended), None)
            if target is None:
                ended = [d for d in on_host if d.ended]
                target = ended[-1] if ended else _orphan(deliveries, host)
            target.ended = True
        else:  # a type Celery may add later: with the host's latest delivery, ending nothing
            target = on_host[-1] if on_host else _orphan(deliveries, host)
        target.events.append(event)
    for event in sent:
        number = _retries(event)
        target = next((d for d in deliveries if d.number == number), None)
        if target is None:
            target = Attempt(number, 1, None, [])
            deliveries.append(target)
        target.events.insert(0, event)
    for d in deliveries:
        d.events.sort(key=_order)
    return sorted(deliveries, key=lambda d: (d.number, d.delivery, d.span[0]))


def _orphan(deliveries: list[Attempt], host: str | None) -> Attempt:
    """A delivery for worker events whose task-received never arrived (or never was: an expired
    task revoked before any worker received it)."""
    number = max((d.number for d in deliveries), default=0)
    same = sum(1 for d in deliveries if d.number == number)
    attempt = Attempt(number, same + 1, host, [])
    deliveries.append(attempt)
    return attempt
