"""Folding events into task and worker state, and deriving the records users see (no I/O).

A task's state is a join-semilattice: one compact *entry* per distinct event, kept sorted by
identity, and *registers* that each keep the large fields of the single highest-ranked event of
some kinds (``states.MERGE_RULES``).  Adding an event already present changes nothing; adding
events in any order ends in the same state.  Everything users see -- attempts, deliveries, the
state name, tags, the current worker -- is then computed from that state alone by
:func:`derive_task`, so a record is a function of the SET of distinct events (rule 1) by
construction rather than by careful ordering.

A worker's state keeps the latest event of each type, the latest gauges, and its liveness on the
monitor's clock: the newest receive time of any event from it (``seen``) and how far the stream
has been judged (``judged``).  Receive times are compared only with receive times and with the
stream's watermark, never with a sender's timestamp (docs/state-rules.md, "Workers").

States are plain JSON-able dicts: they are what the Faust tables store and their changelogs carry.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .events import Sighting, TaskEvent, WorkerEvent
from .states import (
    AFTER_RETRIES,
    CANCELLED_K,
    DEFAULT_EXPIRY_FACTOR,
    UNKNOWN_FREQ,
    ENDING_STATE,
    AFTER_HANDBACK,
    ENDS,
    FAILED_K,
    HANDED_BACK,
    FINAL_STATES,
    HEARTBEAT,
    IGNORED_K,
    JOINS,
    MERGE_RULES,
    NAMING_WRAPPERS,
    OFFLINE,
    OFFLINE_HEARTBEAT_EXPIRED,
    OFFLINE_LEFT,
    ONLINE,
    ONLY_SENT_STATE,
    OTHER_K,
    ORPHANABLE_STATES,
    OWN_REJECT,
    PROGRESS,
    RECEIVED_K,
    REGISTERS_BY_KIND,
    REJECT_EXCEPTION,
    REJECTION_IGNORED,
    REJECTION_REQUEUED,
    REQUEUED_K,
    RETRIED_K,
    RETRIES_KINDS,
    REVOCATION_EXPIRED,
    REVOCATION_PLAIN,
    REVOCATION_TERMINATED,
    REVOKE_RANK,
    REVOKED_K,
    SENT,
    STARTED_K,
    SUCCEEDED_K,
    TASK_ENTRIES_KEEP,
    TASK_ENTRIES_MAX,
    TASK_EVENT_KINDS,
    TERMINAL_PRECEDENCE,
    WRAPPER_EXCEPTIONS,
)

TaskState = dict[str, Any]
WorkerState = dict[str, Any]

# One entry per distinct event: [kind, host, pid, clock, timestamp, other type, received, retries].
# The first six are the identity (``other type`` is "" but for kind "other", whose type it keeps).
# Entries are in arrival order; nothing derived depends on that order, and codec.dumps sorts
# them, so equal sets of events give equal bytes.
KIND, HOST, PID, CLOCK, TS, XTYPE, RECV, RETRIES = range(8)


def _getter(fields: tuple[str, ...]):
    """What a register keeps of an event, as a tuple aligned with its fields (built once)."""
    if fields == ("hostname",):
        return lambda ev: (ev.hostname,)
    return lambda ev: tuple(map(ev.body.get, fields))  # values are atoms (str/number/None): GC-untracked


_REGISTER_PLAN = {
    kind: tuple((name, _getter(MERGE_RULES[name][1]), MERGE_RULES[name][2]) for name in names)
    for kind, names in REGISTERS_BY_KIND.items()
}


# -- ranks: total orders over events, so "the greatest" is always one well-defined event ----
def _revocation(body: dict) -> str:
    if body.get("terminated"):
        return REVOCATION_TERMINATED
    if body.get("expired"):
        return REVOCATION_EXPIRED
    return REVOCATION_PLAIN


def _when(received: float | None, timestamp: float) -> float:
    """Where an event sits on the monitor's clock: its receive time, or -- for inputs that do
    not say (raw bodies replayed) -- its own timestamp, the only time there is."""
    return timestamp if received is None else received


def event_rank(ev: TaskEvent, rank: str, latest: tuple | None = None) -> tuple:
    latest = latest or (_when(ev.received, ev.timestamp), ev.timestamp, ev.clock, ev.hostname, ev.pid)
    if rank == "latest" or rank == "earliest":
        return latest
    if rank == "ran-last":
        return (1 if ev.kind == RECEIVED_K else 0, *latest)
    if rank == "success":
        body = ev.body
        return ((body.get("result") is not None) + (body.get("runtime") is not None), *latest)
    if rank == "revoke":
        return (REVOKE_RANK[_revocation(ev.body)], *latest)
    raise ValueError(f"unknown rank {rank!r}")


# -- tasks ----------------------------------------------------------------------------------
def fold_task(state: TaskState | None, ev: TaskEvent) -> tuple[TaskState, bool]:
    """Merge one event into a task's state (updated in place and returned).

    Returns ``(state, changed)``; ``changed`` is False for an event already merged.
    """
    if state is None:
        state = {"cluster": ev.cluster, "uuid": ev.uuid, "ev": [], "reg": {}}
    elif state["ev"] and state["ev"][0].__class__ is list:
        _thaw(state)
    kind = ev.kind
    ts = ev.timestamp
    clock = ev.clock
    host = ev.hostname
    pid = ev.pid
    xtype = ev.type if kind == "other" else ""
    entries = state["ev"]
    for e in entries:  # a task has a handful of events (at most TASK_ENTRIES_MAX): a scan beats an index
        if e[4] == ts and e[3] == clock and e[0] == kind and e[1] == host and e[2] == pid and e[5] == xtype:
            return state, False  # a duplicate: the first receipt stays (per-partition order)
    received = ev.received
    old = state.get("old")
    changed = True
    if (old is not None and old["cutoff"] is not None and kind in SUMMARISED_KINDS
            and (ts, clock, host, pid, kind, xtype) <= tuple(old["cutoff"])
            and any(e[0] == kind for e in entries)):  # (none of its kind kept: none summarised either, so it is new)
        # As old as what was summarised: counted as a duplicate of a summarised event, but what is
        # a minimum or a maximum (the summary's times, the registers below) takes it all the same:
        # merging an event twice into those changes nothing, whatever the order.
        changed = False
        for field, value, better in (("first", ts, min), ("last", ts, max)):  # (a copy received later: not "seen")
            if old[field] is None or better(old[field], value) != old[field]:
                old[field], changed = value, True
    else:
        retries = (ev.body.get("retries") or 0) if kind in RETRIES_KINDS else None
        entries.append((kind, host, pid, clock, ts, xtype, received, retries))
        if len(entries) > TASK_ENTRIES_MAX:
            _compact(state)

    plan = _REGISTER_PLAN.get(kind)
    if plan:
        regs = state["reg"]
        latest_rank = (ts if received is None else received, ts, clock, host, pid)
        other_rank = None  # "ran-last", "success" or "revoke": at most one of them per kind, built once
        for name, values, rank_name in plan:
            if rank_name == "latest" or rank_name == "earliest":
                rank = latest_rank
            elif rank_name == "success":  # event_rank's, inlined: one in four events is a success
                body = ev.body
                rank = ((body.get("result") is not None) + (body.get("runtime") is not None), *latest_rank)
            else:
                rank = other_rank = other_rank or event_rank(ev, rank_name, latest_rank)
            current = regs.get(name)
            if current is None or (rank < current[0] if rank_name == "earliest" else rank > current[0]):
                regs[name] = (rank, values(ev))
                changed = True
    return state, changed


def _full_key(e: tuple) -> tuple:
    """The monitor-clock order of entries, total (the identity ends it)."""
    return (e[TS] if e[RECV] is None else e[RECV], e[TS], e[CLOCK], e[HOST], e[PID], e[KIND], e[XTYPE])


# Kinds that repeat with every attempt or delivery (a task retried 10,000 times sends 10,000 of
# each) and may be summarised; the terminal ones (succeeded, failed, revoked, ignored) are few and
# always kept whole, so a late one -- from a host whose clock is behind -- is never taken for a
# duplicate of a summarised event.
SUMMARISED_KINDS = frozenset({SENT, RECEIVED_K, STARTED_K, RETRIED_K, REQUEUED_K, CANCELLED_K, OTHER_K})


def _event_key(e: tuple) -> tuple:
    """The order summaries cut in: the event's own identity, sending host's clock first (no
    receive time: a redelivered copy, received later, has the same key)."""
    return (e[TS], e[CLOCK], e[HOST], e[PID], e[KIND], e[XTYPE])


def _compact(state: TaskState) -> None:
    """Fold the oldest summarisable entries (:data:`SUMMARISED_KINDS`, by :func:`_event_key`)
    into ``state["old"]`` until TASK_ENTRIES_KEEP remain; the newest entry of each known kind and
    the newest unknown one stay (terminal precedence, tags and ``*_at`` fields read them). The
    summary keeps what the record needs of them: how many per kind, the retries they proved,
    first/last timestamps, newest receive time, and the newest summarised entry's key (``cutoff``):
    a summarisable event at or before it arriving later counts as one already summarised.

    Past TASK_ENTRIES_MAX entries a task's record is exact for everything but such late events of
    the summarised kinds (docs/state-rules.md, "Bounded state")."""
    retries_before = _analyse(state)[2]
    entries = state["ev"]
    newest = {(e[KIND], e[XTYPE] if e[KIND] != OTHER_K else ""): e for e in sorted(entries, key=_full_key)}
    pinned = set(map(id, newest.values()))
    remove = len(entries) - TASK_ENTRIES_KEEP
    removed, kept = [], []
    for e in sorted(entries, key=_event_key):
        if remove and id(e) not in pinned and e[KIND] in SUMMARISED_KINDS:
            removed.append(e)
            remove -= 1
        else:
            kept.append(e)
    old = state.get("old")
    if old is None:
        old = state["old"] = {"n": 0, "kinds": {}, "retries": 0, "first": None, "last": None, "seen": None, "cutoff": None}
    kinds = old["kinds"]
    for e in removed:
        kinds[e[KIND]] = kinds.get(e[KIND], 0) + 1
        ts, when = e[TS], _when(e[RECV], e[TS])
        if old["first"] is None or ts < old["first"]:
            old["first"] = ts
        if old["last"] is None or ts > old["last"]:
            old["last"] = ts
        if old["seen"] is None or when > old["seen"]:
            old["seen"] = when
    old["n"] += len(removed)
    old["retries"] = max(old["retries"], retries_before)
    cutoff = list(_event_key(removed[-1])) if removed else old["cutoff"]
    if old["cutoff"] is None or (cutoff is not None and tuple(cutoff) > tuple(old["cutoff"])):
        old["cutoff"] = cutoff
    state["ev"] = kept


def events_count(state: TaskState) -> int:
    """Distinct events merged into the task, summarised ones included."""
    old = state.get("old")
    return len(state["ev"]) + (old["n"] if old else 0)


def kind_counts(state: TaskState) -> dict[str, int]:
    """Distinct events per kind, summarised ones included."""
    old = state.get("old")
    counts = dict(old["kinds"]) if old else {}
    for e in state["ev"]:
        counts[e[KIND]] = counts.get(e[KIND], 0) + 1
    return counts


def _thaw(state: TaskState) -> None:
    """A state read back from JSON (a table changelog) has lists where the fold keeps tuples:
    tuples of atoms are not tracked by Python's cyclic GC, which with millions of tracked
    lists took half the fold's time."""
    state["ev"] = [tuple(e) for e in state["ev"]]
    state["reg"] = {name: (tuple(rank), tuple(values)) for name, (rank, values) in state["reg"].items()}


def mark_worker_lost(state: TaskState, hostname: str, lost_at: float) -> bool:
    """Record that ``hostname`` was declared lost at ``lost_at`` (monitor clock); True if new.

    Kept per worker as the latest such time, so repeated or reordered notices change nothing;
    :func:`derive_task` turns it into ``orphaned_at`` while it still applies.
    """
    lost = state.setdefault("lost", {})
    if lost.get(hostname, float("-inf")) >= lost_at:
        return False
    lost[hostname] = lost_at
    return True


# -- attempts and deliveries ----------------------------------------------------------------
class Delivery:
    """One run of the task's message on one worker (states.JOINS says which events join it)."""

    __slots__ = ("host", "pid", "attempt", "known", "entries", "started", "ended", "received")

    def __init__(self, host: str, attempt: int, known: bool, pid: int = 0):
        self.host = host
        self.pid = pid  # the worker process: its task-received's (or first event's) pid
        self.attempt = attempt  # known: the task-received's retries; else a lower bound
        self.known = known
        self.entries: list[list] = []
        self.started: list | None = None
        self.received: list | None = None
        self.ended: str | None = None  # the kind that ended it (states.ENDS)

    def order(self) -> tuple:
        """The current delivery is the greatest: attempt, then first receive (monitor clock)."""
        first = self.entries[0]
        return self.attempt, _when(first[RECV], first[TS]), first[TS], first[CLOCK], self.host, first[PID], first[KIND]

    def as_dict(self) -> dict:
        return {
            "attempt": self.attempt,
            "attempt_known": self.known,
            "worker": self.host,
            "ended_by": self.ended,
            "received_at": self.received[TS] if self.received else None,
            "started_at": self.started[TS] if self.started else None,
            "events": [_entry_dict(e) for e in self.entries],
        }


_HOST_ORDER = {RECEIVED_K: 0, STARTED_K: 1}  # same timestamp and clock: received, started, the rest


def _on_host(entry: list) -> tuple:
    # a total order: two distinct events of one host never tie on all of these
    return entry[TS], entry[CLOCK], _HOST_ORDER.get(entry[KIND], 2), entry[PID], entry[KIND]


def _joinable(mine: list[Delivery], phase: str) -> Delivery | None:
    if phase == "waiting":
        for d in mine:
            if d.ended is None and d.started is None:
                return d
        return None
    if phase == "running":
        for d in reversed(mine):
            if d.ended is None and d.started is not None:
                return d
    for d in reversed(mine):
        if d.ended is None:
            return d
    return None


def deliveries_of(entries: list[list]) -> list[Delivery]:
    """The deliveries of a task: each host's timeline, on its own clock, cut by states.JOINS/ENDS."""
    by_host: dict[str, list[list]] = {}
    for e in entries:
        kind = e[KIND]
        if kind == RECEIVED_K or kind in JOINS:
            events = by_host.get(e[HOST])
            if events is None:
                by_host[e[HOST]] = [e]
            else:
                events.append(e)
    out: list[Delivery] = []
    for host, events in by_host.items():
        if len(events) > 1:
            events.sort(key=_on_host)
        mine: list[Delivery] = []
        first_pid, restarted = None, False  # deliveries of more than one worker process (a restart under the same name)
        for e in events:
            kind = e[KIND]
            if kind == RECEIVED_K:
                d = Delivery(host, e[RETRIES] or 0, True, e[PID])
                d.received = e
                if first_pid is None:
                    first_pid = e[PID]
                elif e[PID] != first_pid:
                    restarted = True
                mine.append(d)
            else:
                # A worker's task events all come from its main process: an event joins a delivery
                # of its own pid (a worker restarted under the same hostname must not start a
                # message the dead process had received); any delivery when none has its pid.
                pool = mine
                if restarted:
                    same = [m for m in mine if m.pid == e[PID]]
                    if same:
                        pool = same
                d = _joinable(pool, JOINS[kind]) if pool else None
                if d is None and kind in AFTER_HANDBACK and pool and pool[-1].ended in HANDED_BACK:
                    d = pool[-1]
                if d is None:
                    last = pool[-1] if pool else None
                    if last is None:
                        d = Delivery(host, 0, False, e[PID])
                    else:
                        d = Delivery(host, last.attempt + ENDS.get(last.ended, 0), last.known, e[PID])
                    mine.append(d)
                if kind == STARTED_K:
                    if d.started is None:
                        d.started = e
                elif kind in ENDS:
                    d.ended = kind
            d.entries.append(e)
        out.extend(mine)
    return out


_REPR_TYPE = re.compile(r"([A-Za-z_][\w.]*)\(")
_TRACEBACK_TYPE = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")


@lru_cache(maxsize=4096)  # a few exception texts repeat across most failed tasks
def exception_type(exception: str | None, traceback: str | None) -> str | None:
    """The exception's class name (rule 5): from the repr ``Type(...)``; a wrapper that names the
    real type as an argument (UnpickleableExceptionWrapper) gives that name; a wrapper that hides
    it (ExceptionWithTraceback) or a text that is no repr sends us to the traceback's last line."""
    if exception:
        m = _REPR_TYPE.match(exception)
        if m:
            name = m.group(1).rsplit(".", 1)[-1]
            index = NAMING_WRAPPERS.get(name)
            if index is not None:
                # the wrapper's first arguments only: a hostile text of escaped quotes made the scan quadratic
                quoted = _QUOTED.findall(exception[m.end() : m.end() + 1000])
                if len(quoted) > index:
                    named = "".join(quoted[index]).rsplit(".", 1)[-1]
                    if named.isidentifier():
                        return named
            elif name not in WRAPPER_EXCEPTIONS:
                return name
    if traceback:
        for line in reversed(traceback.splitlines()):
            line = line.strip()
            if line:
                m = _TRACEBACK_TYPE.match(line)
                name = m.group(1).rsplit(".", 1)[-1] if m else None
                if name in NAMING_WRAPPERS:
                    continue  # "UnpickleableExceptionWrapper: ..." lines: the type is above
                return name
    return None


def _reg(regs: dict, name: str) -> dict:
    current = regs.get(name)
    return dict(zip(MERGE_RULES[name][1], current[1])) if current else {}


_NO_VALUES = {name: (None,) * len(fields) for name, (_, fields, _) in MERGE_RULES.items()}


def _values_of(regs: dict, name: str) -> tuple | list:
    current = regs.get(name)
    return current[1] if current is not None else _NO_VALUES[name]


def _latest(entries: list[list]) -> list | None:
    """The latest of some entries on the monitor's clock (receive time, then identity)."""
    if len(entries) == 1:
        return entries[0]
    return max(entries, key=_latest_key, default=None)


def _latest_key(e: list) -> tuple:
    return _when(e[RECV], e[TS]), e[TS], e[CLOCK], e[HOST], e[PID]


TERMINAL_KINDS = (SUCCEEDED_K, FAILED_K, REVOKED_K, IGNORED_K)


def _analyse(state: TaskState) -> tuple:
    """(status, current delivery, retries, entries by kind, failure's exception type): what
    derive_task and task_status share, computed in one pass."""
    by_kind: dict[str, list[list]] = {}
    retries = 0
    for e in state["ev"]:
        group = by_kind.get(e[KIND])
        if group is None:
            by_kind[e[KIND]] = [e]
        else:
            group.append(e)
        if e[RETRIES] is not None and e[RETRIES] > retries:
            retries = e[RETRIES]
    deliveries = deliveries_of(state["ev"])
    any_failed = FAILED_K in by_kind
    failure_type = exception_type(*_values_of(state["reg"], "failure")) if any_failed else None
    handed_back = [d for d in deliveries if d.ended in HANDED_BACK]
    if handed_back:  # terminal events of a delivery given back to the broker do not end the task
        dropped = {id(e) for d in handed_back for e in d.entries}
        for kind in TERMINAL_KINDS:
            group = by_kind.get(kind)
            if group is not None and any(id(e) in dropped for e in group):
                group = [e for e in group if id(e) not in dropped]
                if group:
                    by_kind[kind] = group
                else:
                    del by_kind[kind]
    retried = by_kind.get(RETRIED_K)
    old = state.get("old")
    if old is not None:  # entries summarised (a task with very many attempts)
        retried_count = (len(retried) if retried else 0) + old["kinds"].get(RETRIED_K, 0)
        retries = max(retries, old["retries"], retried_count)
    elif retried is not None and len(retried) > retries:
        retries = len(retried)  # retries >= the attempts ended by task-retried
    for d in deliveries:
        if d.attempt > retries:
            retries = d.attempt
    failed = by_kind.get(FAILED_K)

    for kind, terminal in TERMINAL_PRECEDENCE:
        if kind == OWN_REJECT:
            if (failed is not None and failure_type == REJECT_EXCEPTION) or (failed is None and IGNORED_K in by_kind):
                deciding = _latest(by_kind.get(IGNORED_K) or failed)
                status = terminal
                break
        elif kind in by_kind:
            deciding = _latest(by_kind[kind])
            status = AFTER_RETRIES.get(terminal, terminal) if retries > 0 else terminal
            break
    else:
        deciding = None
    if deciding is not None:
        current = None
        if len(deliveries) == 1:
            current = deliveries[0] if deciding[KIND] in JOINS else None
        else:
            for d in deliveries:
                if deciding in d.entries and any(e is deciding for e in d.entries):
                    current = d
                    break
    else:
        current = deliveries[0] if len(deliveries) == 1 else max(deliveries, key=Delivery.order, default=None)
        if current is None:
            status = ONLY_SENT_STATE
        elif current.ended is not None:
            status = ENDING_STATE[current.ended]
        else:
            status = PROGRESS[0][1] if current.started is not None else PROGRESS[1][1]
    return status, current, retries, by_kind, failure_type if any_failed else None


def task_status(state: TaskState) -> str:
    """The state name (rules 3 and 4)."""
    return _analyse(state)[0]


def task_seen_at(state: TaskState) -> float | None:
    """The newest receive time of the task's events (monitor clock; sender time for inputs
    without receive times)."""
    seen = max((_when(e[RECV], e[TS]) for e in state["ev"]), default=None)
    old = state.get("old")
    if old is not None and old["seen"] is not None and (seen is None or old["seen"] > seen):
        seen = old["seen"]
    return seen


def retirable(state: TaskState, now: float, retention: float) -> bool:
    """Has this finished task been left alone for ``retention`` seconds (so the table may drop it)?

    "Left alone" counts from the later of its newest event's receive time and
    ``state["folded_at"]``, the wall-clock time the streams app last changed it: catching up on a
    backlog of old events must not drop a task between two of its own events. A late duplicate
    after that re-creates a smaller state; its record carries fewer events, so ClickHouse
    (version = events_count) keeps the full one.
    """
    seen = task_seen_at(state)
    if seen is None:
        return False
    touched = max(seen, state.get("folded_at") or seen)
    return touched < now - retention and task_status(state) in FINAL_STATES


_TYPE_OF_KIND = {kind: etype for etype, kind in TASK_EVENT_KINDS.items() if kind is not None}
_TYPE_OF_KIND.update({REQUEUED_K: "task-rejected", IGNORED_K: "task-rejected"})


def _entry_dict(e: list) -> dict:
    return {"type": e[XTYPE] or _TYPE_OF_KIND[e[KIND]], "kind": e[KIND], "hostname": e[HOST], "pid": e[PID],
            "clock": e[CLOCK], "timestamp": e[TS], "received": e[RECV], "retries": e[RETRIES]}  # fmt: skip


def task_deliveries(state: TaskState) -> list[dict]:
    """The task's deliveries, ordered by (attempt, first receive): attempt number (and whether it
    is known or a lower bound), worker, how it ended, and its events -- for timelines (the UI)."""
    return [d.as_dict() for d in sorted(deliveries_of(state["ev"]), key=Delivery.order)]


# Terminal and ending timestamps: the latest event of the kind(s), on the monitor's clock.
_LATEST_TIMESTAMPS = (
    ("succeeded_at", SUCCEEDED_K),
    ("failed_at", FAILED_K),
    ("retried_at", RETRIED_K),
    ("revoked_at", REVOKED_K),
)
_META = MERGE_RULES["meta"][1]
_ROUTE = MERGE_RULES["route"][1]
_SUCCESS = MERGE_RULES["success"][1]


def derive_task(state: TaskState) -> dict:
    """The task record: what the output topic carries and ClickHouse stores (task-state.v1)."""
    status, current, retries, by_kind, failure_type = _analyse(state)
    regs = state["reg"]
    old = state.get("old")  # summarised entries (a task with very many attempts)
    revocation = signum = None
    revoke = regs.get("revoke")
    if revoke is not None:
        revoke = _reg(regs, "revoke")
        revocation = _revocation(revoke)
        signum = revoke.get("signum") if revocation == REVOCATION_TERMINATED else None
    failed = failure_type is not None or any(e[KIND] == FAILED_K for e in state["ev"])  # handed back too
    if IGNORED_K in by_kind or (FAILED_K in by_kind and failure_type == REJECT_EXCEPTION):
        rejection = REJECTION_IGNORED
    elif REQUEUED_K in by_kind or (old is not None and old["kinds"].get(REQUEUED_K)):
        rejection = REJECTION_REQUEUED
    else:
        rejection = None
    exc, tb = _values_of(regs, "failure" if failed else "retry")
    worker = current.host if current is not None else None
    entries = state["ev"]
    first = last = seen_at = None
    for e in entries:
        ts = e[TS]
        when = ts if e[RECV] is None else e[RECV]
        if first is None:
            first = last = ts
            seen_at = when
        else:
            if ts < first:
                first = ts
            if ts > last:
                last = ts
            if when > seen_at:
                seen_at = when
    if old is not None and old["n"]:
        first = old["first"] if first is None else min(first, old["first"])
        last = old["last"] if last is None else max(last, old["last"])
        seen_at = old["seen"] if seen_at is None else max(seen_at, old["seen"])
    orphaned_at = None
    lost = state.get("lost")
    if lost and worker in lost and status in ORPHANABLE_STATES and seen_at <= lost[worker]:
        orphaned_at = lost[worker]
    meta = _values_of(regs, "meta")
    record = {
        "kind": "task",
        "cluster": state["cluster"],
        "uuid": state["uuid"],
        "name": meta[0],
        "state": status,
        "retries": retries,
        "revocation_reason": revocation,
        "signum": signum,
        "rejection": rejection,
        "requeues": len(by_kind.get(REQUEUED_K, ())) + (old["kinds"].get(REQUEUED_K, 0) if old else 0),
        "cancels": len(by_kind.get(CANCELLED_K, ())) + (old["kinds"].get(CANCELLED_K, 0) if old else 0),
        "exception": exc,
        "exception_type": failure_type if failed else exception_type(exc, tb),
        "traceback": tb,
        "worker": worker,
        "client": _values_of(regs, "client")[0],
        "orphaned_at": orphaned_at,
    }
    record.update(zip(_META, meta))
    record.update(zip(_ROUTE, _values_of(regs, "route")))
    record.update(zip(_SUCCESS, _values_of(regs, "success")))
    sent = by_kind.get(SENT)
    if sent is None:
        record["queued_at"] = None
    else:
        record["queued_at"] = (sent[0] if len(sent) == 1 else max(sent, key=lambda e: (e[RETRIES], *_latest_key(e))))[TS]
    record["received_at"] = current.received[TS] if current is not None and current.received else None
    record["started_at"] = current.started[TS] if current is not None and current.started else None
    for field, kind in _LATEST_TIMESTAMPS:
        group = by_kind.get(kind)
        record[field] = None if group is None else _latest(group)[TS]
    rejected = by_kind.get(REQUEUED_K, []) + by_kind.get(IGNORED_K, [])
    record["rejected_at"] = _latest(rejected)[TS] if rejected else None
    record["first_seen_at"] = first
    record["last_seen_at"] = last
    record["seen_at"] = seen_at
    record["events_count"] = len(entries) + (old["n"] if old else 0)
    return record


# -- workers --------------------------------------------------------------------------------
_WORKER_TS_FIELD = {"worker-online": "online", "worker-heartbeat": "heartbeat", "worker-offline": "offline"}
_WORKER_LATEST_FIELDS = ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys")


def new_worker_state(cluster: str | None, hostname: str) -> WorkerState:
    return {
        "cluster": cluster,
        "hostname": hostname,
        "online": None,  # latest worker-online / -heartbeat / -offline timestamp (worker clock)
        "heartbeat": None,
        "offline": None,
        "alive": None,  # latest timestamp of any event but worker-offline (worker clock)
        "latest": None,  # [rank, gauges] of the latest online/heartbeat/offline event
        "seen": None,  # newest receive time of any event from it (monitor clock)
        "alive_seen": None,  # newest receive time of a worker-* event but worker-offline, or of task
        # events whose pid is not known (packs of an older bridge) (monitor clock)
        "offline_seen": None,  # newest receive time of a worker-offline (monitor clock)
        "offline_pid": None,  # [rank, pid] of the newest-received worker-offline
        "task_seen": None,  # [[pid, newest receive time], ...]: task events' signs of life, the two
        # newest pids (a worker's own final task events after its worker-offline do not undo it)
        "skew": None,  # [receive time, timestamp - receive time] of the newest-received worker event
        "judged": None,  # the watermark at which it was last found gone (monitor clock)
    }


def fold_worker(state: WorkerState | None, ev: WorkerEvent) -> tuple[WorkerState, bool]:
    """Merge one worker-* event: liveness, the latest of each type and the latest gauges."""
    if state is None:
        state = new_worker_state(ev.cluster, ev.hostname)
    changed = False
    ts = ev.timestamp
    received = _when(ev.received, ts)
    field = _WORKER_TS_FIELD.get(ev.type)
    if field is not None:
        if state[field] is None or ts > state[field]:
            state[field] = ts
            changed = True
        # the gauges of the newest-received event: a node restarted with its clock stepped back
        # would otherwise keep its former run's pid and counters (its timestamps are lower)
        rank = [received, ts, ev.clock, ev.pid, ev.type]
        latest = state["latest"]
        if latest is None or rank > latest[0]:
            values = {f: ev.body.get(f) for f in _WORKER_LATEST_FIELDS}
            values["pid"] = ev.pid
            state["latest"] = [rank, values]
            changed = True
    if field != "offline" and (state["alive"] is None or ts > state["alive"]):
        state["alive"] = ts
        changed = True
    mark = "offline_seen" if field == "offline" else "alive_seen"
    if state.get(mark) is None or received > state[mark]:
        state[mark] = received
        changed = True
    if field == "offline":
        rank = [received, ts, ev.clock, ev.pid]
        current = state.get("offline_pid")
        if current is None or rank > current[0]:
            state["offline_pid"] = [rank, ev.pid]
            changed = True
    if state["seen"] is None or received > state["seen"]:
        state["seen"] = received
        changed = True
    if ev.received is not None:
        skew = state["skew"]
        if skew is None or ev.received > skew[0]:
            state["skew"] = [ev.received, round(ts - ev.received, 3)]
            changed = True
    return state, changed


def fold_sighting(state: WorkerState | None, seen: Sighting) -> tuple[WorkerState, bool]:
    """Task events of the worker are a sign of life too (Celery's State counts any event)."""
    if state is None:
        state = new_worker_state(seen.cluster, seen.hostname)
    changed = False
    if state["seen"] is None or seen.received > state["seen"]:
        state["seen"] = seen.received
        changed = True
    if seen.timestamp is not None and (state["alive"] is None or seen.timestamp > state["alive"]):
        state["alive"] = seen.timestamp
        changed = True
    if seen.pid is None:  # an older bridge's pack: which process sent them is not known
        if state.get("alive_seen") is None or seen.received > state["alive_seen"]:
            state["alive_seen"] = seen.received
            changed = True
    elif _task_seen(state, seen.pid, seen.received):
        changed = True
    return state, changed


def _task_seen(state: WorkerState, pid: int, received: float) -> bool:
    """Keep the newest receive time of task events per pid, for the two newest pids (a bounded
    join: the result is the two greatest of the per-pid maxima, whatever the order)."""
    marks = state.get("task_seen")
    if marks is None:
        state["task_seen"] = [[pid, received]]
        return True
    first = marks[0]
    if first[0] == pid:  # the common case: the newest pid again (it stays first)
        if received <= first[1]:
            return False
        first[1] = received
        return True
    for mark in marks:
        if mark[0] == pid:
            if received <= mark[1]:
                return False
            mark[1] = received
            break
    else:
        marks.append([pid, received])
    marks.sort(key=lambda m: (-m[1], m[0]))
    del marks[2:]
    return True


def worker_left(state: WorkerState) -> bool:
    """OFFLINE(left): its newest worker-offline was received at or after every other sign of life
    of the worker -- except task events of the very process that said goodbye (same pid): a warm
    or soft shutdown sends worker-offline first, then the events of the tasks it drains
    (docs/emit-paths.md, "Shutdown"). A worker-online or -heartbeat, or a task event of another
    pid (a new process under the same name), received later brings it back."""
    offline_seen = state.get("offline_seen")
    if offline_seen is None:  # a state stored before receive times were kept per kind: the worker's own clock
        offline, alive = state["offline"], state["alive"]
        return offline is not None and (alive is None or offline >= alive)
    alive_seen = state.get("alive_seen")
    if alive_seen is not None and alive_seen > offline_seen:
        return False
    marks = state.get("task_seen")
    if marks:
        offline_pid = state.get("offline_pid")
        pid = offline_pid[1] if offline_pid is not None else None
        for mark_pid, received in marks:
            if mark_pid != pid and received > offline_seen:
                return False
    return True


def _freq(state: WorkerState) -> float:
    """The worker's heartbeat interval: the freq of its newest-received worker event; a worker
    that never sent one (no worker-* event: --without-heartbeat) gets Celery's State default."""
    return (state["latest"][1].get("freq") if state["latest"] else None) or UNKNOWN_FREQ


def worker_expires_at(state: WorkerState, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> float | None:
    """When (monitor clock) the worker counts as gone if nothing more is received from it."""
    seen = state["seen"]
    return None if seen is None else seen + expiry_factor * _freq(state)


def judge_worker(state: WorkerState, watermark: float, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> bool:
    """Judge liveness at ``watermark`` (how far the stream has been read, monitor clock).

    Records the watermark in the state only when it makes the worker gone, so the judgement
    survives restarts (a re-read of older input cannot bring the worker back) without a state
    write per tick. True when the state changed.
    """
    expires_at = worker_expires_at(state, expiry_factor)
    if expires_at is None or watermark <= expires_at or worker_left(state):
        return False
    judged = state["judged"]
    if judged is not None and judged > expires_at:
        return False  # already gone at this expiry
    state["judged"] = watermark
    return True


def derive_worker(state: WorkerState, now: float | None = None, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> dict:
    """The worker record (worker-state.v1).

    Liveness is judged at the later of ``now`` and the state's own ``judged`` watermark, both on
    the monitor's clock (None: only what the events and earlier judgements say).
    """
    online, heartbeat, offline = state["online"], state["heartbeat"], state["offline"]
    expires_at = worker_expires_at(state, expiry_factor)
    judged = state["judged"]
    at = judged if now is None else (now if judged is None else max(now, judged))
    reason = None
    if worker_left(state):
        status, reason = OFFLINE, OFFLINE_LEFT
    elif at is not None and expires_at is not None and at > expires_at:
        status, reason = OFFLINE, OFFLINE_HEARTBEAT_EXPIRED
    elif heartbeat is not None and (online is None or heartbeat > online):
        status = HEARTBEAT
    else:
        status = ONLINE
    latest = state["latest"][1] if state["latest"] else {}
    skew = state["skew"]
    return {
        "kind": "worker",
        "cluster": state["cluster"],
        "hostname": state["hostname"],
        "state": status,
        "offline_reason": reason,
        "pid": latest.get("pid"),
        "freq": latest.get("freq"),
        "active": latest.get("active"),
        "processed": latest.get("processed"),
        "loadavg": latest.get("loadavg"),
        "sw_ident": latest.get("sw_ident"),
        "sw_ver": latest.get("sw_ver"),
        "sw_sys": latest.get("sw_sys"),
        "online_at": online,
        "heartbeat_at": heartbeat,
        "offline_at": offline,
        "seen_at": state["seen"],
        "expires_at": expires_at,
        "judged_at": at,
        "skew": skew[1] if skew else None,
    }
