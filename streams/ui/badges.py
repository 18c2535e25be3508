"""State badges and their tags, as Leek shows them — rules as data, one line per tag.

A badge is a state and its colour; tags are the short texts that say *why*, read from the task's
record (docs/state-rules.md, "Tags, as Leek shows them"):

    RECOVERED  after 2 retries              CRITICAL  after 3 retries
    REVOKED    E (expired) | T SIGTERM       REJECTED  I (ignored) | Q ×2 (requeued, with the count)
    RETRY      waiting to retry for the 2nd time
    RECEIVED   after 1 failed execution (only when retries > 0)

Adding a field to a badge is one line in ``TASK_TAGS`` (or ``WORKER_TAGS``); the query layer
selects every field named there when the table has it (``task_fields``), so a column the engine
adds later (``orphaned_at``, ``cancels``, ``skew``...) shows up as soon as it exists.
Pure: no I/O; the templates only print what ``task_badge`` / ``worker_badge`` return.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, Callable

from streams.engine import states as S

# Leek's colours (antd tag colours: cyan, green, geekblue, blue, purple, red, magenta, gold),
# with CRITICAL a darker red than FAILED so the two stand apart.
TASK_COLOURS = {
    S.QUEUED: "cyan",
    S.RECEIVED: "green",
    S.STARTED: "geekblue",
    S.SUCCEEDED: "blue",
    S.RECOVERED: "purple",
    S.FAILED: "red",
    S.CRITICAL: "volcano",
    S.REJECTED: "magenta",
    S.REVOKED: "magenta",
    S.RETRY: "gold",
}
WORKER_COLOURS = {S.ONLINE: "gold", S.HEARTBEAT: "blue", S.OFFLINE: "red"}
EVENT_COLOURS = {  # timeline dots, by event type
    "task-sent": "cyan",
    "task-received": "green",
    "task-started": "geekblue",
    "task-succeeded": "blue",
    "task-failed": "red",
    "task-retried": "gold",
    "task-rejected": "magenta",
    "task-revoked": "magenta",
}


@dataclass(frozen=True)
class Tag:
    text: str
    title: str  # the long form, shown on hover


@dataclass(frozen=True)
class Badge:
    state: str
    colour: str
    tags: tuple[Tag, ...]

    @property
    def label(self) -> str:
        """The badge as one line of text: 'RECOVERED after 2 retries'."""
        return " ".join([self.state, *(t.text for t in self.tags)])


@dataclass(frozen=True)
class TagRule:
    """A tag shown on ``states`` (None = any state) when ``field`` is set in the record.

    ``render(value, record)`` returns the tag, or None to show nothing.
    """

    states: frozenset[str] | None
    field: str
    render: Callable[[Any, dict], Tag | None]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def signal_name(signum: Any) -> str:
    try:
        return signal.Signals(int(signum)).name
    except (TypeError, ValueError):
        return f"signal {signum}"


def _revoked(reason: str, record: dict) -> Tag | None:
    if reason == S.REVOCATION_EXPIRED:
        return Tag("E", "expired: revoked because its expiry time had passed")
    if reason == S.REVOCATION_TERMINATED:
        name = signal_name(record.get("signum")) if record.get("signum") is not None else "no signal"
        return Tag(f"T {name}", f"terminated with {name} while it ran")
    return None  # a plain revoke has no tag (Leek shows none either)


def _rejected(rejection: str, record: dict) -> Tag | None:
    if rejection == S.REJECTION_IGNORED:
        return Tag("I", "ignored: rejected without requeue (dropped)")
    if rejection == S.REJECTION_REQUEUED:
        n = record.get("requeues") or 0
        return Tag(f"Q ×{n}", f"requeued {plural(n, 'time')}")
    return None


def _retry(retries: int, record: dict) -> Tag:
    # With rule 2 of docs/state-rules.md (retries >= attempts ended by task-retried), `retries`
    # counts the retries so far: the one being waited for is the retries-th.
    n = max(int(retries or 0), 1)
    return Tag(f"waiting to retry for the {ordinal(n)} time", f"attempt {n} failed and will be retried")


def _orphaned(at: float, record: dict) -> Tag:
    return Tag("orphaned", "its worker was lost while it held the task (received or running; no further event)")


def _when(value: Any) -> bool:
    return value is not None and value != "" and value != 0


# One line per tag. Order = display order.
TASK_TAGS: tuple[TagRule, ...] = (
    TagRule(frozenset({S.RECOVERED, S.CRITICAL}), "retries", lambda v, r: Tag(f"after {plural(v, 'retry', 'retries')}", "retries before this end") if v else None),
    TagRule(frozenset({S.REVOKED}), "revocation_reason", _revoked),
    TagRule(frozenset({S.REJECTED}), "rejection", _rejected),
    TagRule(frozenset({S.RETRY}), "retries", _retry),
    TagRule(frozenset({S.RECEIVED}), "retries", lambda v, r: Tag(f"after {plural(v, 'failed execution')}", "a retry waiting for its turn") if v else None),
    TagRule(None, "orphaned_at", _orphaned),
    TagRule(None, "cancels", lambda v, r: Tag(f"cancelled ×{v}", f"cancelled {plural(v, 'time')} by a worker losing its broker connection") if v else None),
)

WORKER_TAGS: tuple[TagRule, ...] = (
    TagRule(frozenset({S.OFFLINE}), "offline_reason", lambda v, r: Tag(str(v), "why it is offline") if v else None),
    TagRule(None, "skew", lambda v, r: Tag(f"clock {v:+.1f} s", "worker clock minus receive time") if abs(v) >= 1 else None),
)


def task_fields() -> tuple[str, ...]:
    """Record fields the task badge reads (the list and graph queries select them when present)."""
    return tuple(dict.fromkeys(["state", *(rule.field for rule in TASK_TAGS), "signum", "requeues"]))


def worker_fields() -> tuple[str, ...]:
    return tuple(dict.fromkeys(["state", *(rule.field for rule in WORKER_TAGS)]))


def _badge(record: dict, rules: tuple[TagRule, ...], colours: dict[str, str]) -> Badge:
    state = record.get("state") or "UNKNOWN"
    tags = []
    for rule in rules:
        if rule.states is not None and state not in rule.states:
            continue
        value = record.get(rule.field)
        if not _when(value):
            continue
        tag = rule.render(value, record)
        if tag is not None:
            tags.append(tag)
    return Badge(state, colours.get(state, "grey"), tuple(tags))


def task_badge(record: dict) -> Badge:
    """The badge of a task record (a dict with at least ``state``; missing fields show nothing)."""
    return _badge(record, TASK_TAGS, TASK_COLOURS)


def worker_badge(record: dict) -> Badge:
    return _badge(record, WORKER_TAGS, WORKER_COLOURS)
