"""Folding events into task and worker state, and deriving the records users see (no I/O).

The task state is a join-semilattice: a set of event identities, per-kind counts over that
set, and *registers* that each keep the values of the single highest-ranked event of some
kinds (``states.MERGE_RULES``).  Adding an event already in the set changes nothing; adding
events in any order ends in the same state.  The record (state name, tags, fields) is then
computed from that state alone by :func:`derive_task`, so it is a function of the SET of
distinct events (rule 1) by construction rather than by careful ordering.

The state is a plain JSON-able dict (``ids`` is a set; see ``codec.py``) because it is what
the Faust table stores and what its changelog carries.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .events import TaskEvent, WorkerEvent
from .states import (
    AFTER_RETRIES,
    DEFAULT_EXPIRY_FACTOR,
    DEFAULT_FREQ,
    ENDING_STATE,
    FINAL_STATES,
    FAILED_K,
    IGNORED_K,
    MERGE_RULES,
    OFFLINE,
    OFFLINE_HEARTBEAT_EXPIRED,
    OFFLINE_LEFT,
    ONLINE,
    HEARTBEAT,
    ONLY_SENT_STATE,
    PROGRESS,
    RECEIVED_K,
    REGISTERS_BY_KIND,
    REJECTION_IGNORED,
    REJECTION_REQUEUED,
    REQUEUED_K,
    RETRIED_K,
    RETRIES_KINDS,
    REVOCATION_EXPIRED,
    REVOCATION_PLAIN,
    REVOCATION_TERMINATED,
    REVOKE_RANK,
    TERMINAL_PRECEDENCE,
    TIMESTAMP_FIELDS,
    WRAPPER_EXCEPTIONS,
)

TaskState = dict[str, Any]
_NEG_INF = float("-inf")
WorkerState = dict[str, Any]

def _getter(fields: tuple[str, ...]):
    """What a register keeps of an event, as a tuple aligned with its fields (built once)."""
    if fields == ("hostname",):
        return lambda ev: (ev.hostname,)
    if fields == ("kind",):
        return lambda ev: (ev.kind,)
    return lambda ev: tuple(map(ev.body.get, fields))


_REGISTER_PLAN = {
    kind: tuple((name, _getter(MERGE_RULES[name][1]), MERGE_RULES[name][2]) for name in names)
    for kind, names in REGISTERS_BY_KIND.items()
}
# fold_task builds at most one rank besides "latest"/"earliest" per event.
assert all(len({r for _, _, r in plan} - {"latest", "earliest"}) <= 1 for plan in _REGISTER_PLAN.values())


# -- ranks: total orders over events, so "the greatest" is always one well-defined event ----
def _revocation(body: dict) -> str:
    if body.get("terminated"):
        return REVOCATION_TERMINATED
    if body.get("expired"):
        return REVOCATION_EXPIRED
    return REVOCATION_PLAIN


def event_rank(ev: TaskEvent, rank: str, latest: list | None = None) -> list:
    latest = latest or [ev.timestamp, ev.clock, ev.identity]
    if rank == "latest" or rank == "earliest":
        return latest
    if rank == "attempt":
        return [ev.body.get("retries") or 0, 1 if ev.kind == RECEIVED_K else 0, *latest]
    if rank == "revoke":
        return [REVOKE_RANK[_revocation(ev.body)], *latest]
    raise ValueError(f"unknown rank {rank!r}")


# -- tasks ----------------------------------------------------------------------------------
def new_task_state(cluster: str | None, uuid: str) -> TaskState:
    return {
        "cluster": cluster,
        "uuid": uuid,
        "ids": set(),  # identities of the distinct events merged
        "n": {},  # kind -> number of distinct events of that kind
        "ts": {},  # kind -> latest timestamp of that kind
        "first": None,
        "last": None,
        "retries": 0,
        "reg": {},  # register -> [rank, [value of each of its fields]]
    }


def fold_task(state: TaskState | None, ev: TaskEvent) -> tuple[TaskState, bool]:
    """Merge one event into a task's state (updated in place and returned).

    Returns ``(state, changed)``; ``changed`` is False for an event already merged.
    """
    if state is None:
        state = new_task_state(ev.cluster, ev.uuid)
    ids = state["ids"]
    if ids.__class__ is not set:  # a state read back from JSON (table changelog) has a list
        ids = state["ids"] = set(ids)
    if ev.identity in ids:
        return state, False
    ids.add(ev.identity)

    kind = ev.kind
    ts = ev.timestamp
    n = state["n"]
    n[kind] = n.get(kind, 0) + 1
    latest = state["ts"]
    if ts > latest.get(kind, _NEG_INF):
        latest[kind] = ts
    first = state["first"]
    if first is None or ts < first:
        state["first"] = ts
    last = state["last"]
    if last is None or ts > last:
        state["last"] = ts
    if kind in RETRIES_KINDS:
        retries = ev.body.get("retries") or 0
        if retries > state["retries"]:
            state["retries"] = retries

    regs = state["reg"]
    latest_rank = [ts, ev.clock, ev.identity]
    other_rank = None  # "attempt" or "revoke": at most one of them per kind, built once
    for name, values, rank_name in _REGISTER_PLAN[kind]:
        if rank_name == "latest" or rank_name == "earliest":
            rank = latest_rank
        else:
            rank = other_rank = other_rank or event_rank(ev, rank_name, latest_rank)
        current = regs.get(name)
        if current is None or (rank < current[0] if rank_name == "earliest" else rank > current[0]):
            regs[name] = [rank, values(ev)]
    return state, True


_REPR_TYPE = re.compile(r"([A-Za-z_][\w.]*)\(")
_TRACEBACK_TYPE = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")


@lru_cache(maxsize=4096)  # a few exception texts repeat across most failed tasks
def exception_type(exception: str | None, traceback: str | None) -> str | None:
    """The exception's class name; read from the traceback when the repr hides it (rule 5)."""
    if exception:
        m = _REPR_TYPE.match(exception)
        if m:
            name = m.group(1).rsplit(".", 1)[-1]
            if name not in WRAPPER_EXCEPTIONS:
                return name
    if traceback:
        for line in reversed(traceback.splitlines()):
            line = line.strip()
            if line:
                m = _TRACEBACK_TYPE.match(line)
                return m.group(1).rsplit(".", 1)[-1] if m else None
    return None


def _reg(regs: dict, name: str) -> dict:
    current = regs.get(name)
    return dict(zip(MERGE_RULES[name][1], current[1])) if current else {}


def task_status(state: TaskState) -> str:
    """The state name (rules 3 and 4), from counts and registers only."""
    n = state["n"]
    for kind, terminal in TERMINAL_PRECEDENCE:
        if n.get(kind):
            if state["retries"] > 0:
                return AFTER_RETRIES.get(terminal, terminal)
            return terminal
    ended = n.get(RETRIED_K, 0) + n.get(REQUEUED_K, 0)
    for kind, progress in PROGRESS:
        if n.get(kind, 0) > ended:
            return progress
    if ended:
        return ENDING_STATE[_reg(state["reg"], "ending")["kind"]]
    return ONLY_SENT_STATE


_NO_VALUES = {name: (None,) * len(fields) for name, (_, fields, _) in MERGE_RULES.items()}
_COPIED_REGISTERS = tuple((name, MERGE_RULES[name][1]) for name in ("meta", "route", "success"))
_TIMESTAMP_SOURCES: dict[str, list[str]] = {}
for _kind, _field in TIMESTAMP_FIELDS.items():
    _TIMESTAMP_SOURCES.setdefault(_field, []).append(_kind)
_SINGLE_TS = tuple((field, kinds[0]) for field, kinds in _TIMESTAMP_SOURCES.items() if len(kinds) == 1)
_SHARED_TS = tuple((field, tuple(kinds)) for field, kinds in _TIMESTAMP_SOURCES.items() if len(kinds) > 1)


def _values_of(regs: dict, name: str) -> tuple | list:
    current = regs.get(name)
    return current[1] if current is not None else _NO_VALUES[name]


def retirable(state: TaskState, now: float, retention: float) -> bool:
    """Has this finished task been left alone for ``retention`` seconds (so the table may drop it)?

    "Left alone" counts from the later of its last event's time and ``state["folded_at"]``, the
    wall-clock time the streams app last changed it: catching up on a backlog of old events must
    not drop a task between two of its own events. A late duplicate after that re-creates a
    smaller state; its record carries fewer events, so ClickHouse (version = events_count)
    keeps the full one.
    """
    last = state["last"]
    if last is None:
        return False
    touched = max(last, state.get("folded_at") or last)
    return touched < now - retention and task_status(state) in FINAL_STATES


def derive_task(state: TaskState) -> dict:
    """The task record: what the output topic carries and ClickHouse stores."""
    n = state["n"]
    regs = state["reg"]
    revoke = _reg(regs, "revoke")
    revocation = signum = None
    if revoke:
        revocation = _revocation(revoke)
        signum = revoke.get("signum") if revocation == REVOCATION_TERMINATED else None
    if n.get(IGNORED_K):
        rejection = REJECTION_IGNORED
    elif n.get(REQUEUED_K):
        rejection = REJECTION_REQUEUED
    else:
        rejection = None
    exc, tb = _values_of(regs, "failure" if n.get(FAILED_K) else "retry")
    record = {
        "kind": "task",
        "cluster": state["cluster"],
        "uuid": state["uuid"],
        "name": _values_of(regs, "meta")[0],
        "state": task_status(state),
        "retries": state["retries"],
        "revocation_reason": revocation,
        "signum": signum,
        "rejection": rejection,
        "requeues": n.get(REQUEUED_K, 0),
        "exception": exc,
        "exception_type": exception_type(exc, tb),
        "traceback": tb,
        "worker": _values_of(regs, "worker")[0],
        "client": _values_of(regs, "client")[0],
    }
    for name, fields in _COPIED_REGISTERS:
        record.update(zip(fields, _values_of(regs, name)))
    latest = state["ts"]
    get = latest.get
    for field, kind in _SINGLE_TS:
        record[field] = get(kind)
    for field, kinds in _SHARED_TS:  # rejected_at: either kind of task-rejected, the later
        record[field] = max((latest[k] for k in kinds if k in latest), default=None)
    record["first_seen_at"] = state["first"]
    record["last_seen_at"] = state["last"]
    record["events_count"] = len(state["ids"])
    return record


# -- workers --------------------------------------------------------------------------------
_WORKER_TS_FIELD = {"worker-online": "online", "worker-heartbeat": "heartbeat", "worker-offline": "offline"}
_WORKER_LATEST_FIELDS = ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys")


def new_worker_state(cluster: str | None, hostname: str) -> WorkerState:
    return {"cluster": cluster, "hostname": hostname, "online": None, "heartbeat": None, "offline": None, "latest": None}


def fold_worker(state: WorkerState | None, ev: WorkerEvent) -> tuple[WorkerState, bool]:
    """Merge one worker event: the latest of each type, and the latest event's gauges."""
    if state is None:
        state = new_worker_state(ev.cluster, ev.hostname)
    changed = False
    field = _WORKER_TS_FIELD[ev.type]
    if state[field] is None or ev.timestamp > state[field]:
        state[field] = ev.timestamp
        changed = True
    rank = [ev.timestamp, ev.clock, ev.pid, ev.type]
    latest = state["latest"]
    if latest is None or rank > latest[0]:
        values = {f: ev.body.get(f) for f in _WORKER_LATEST_FIELDS}
        values["pid"] = ev.pid
        state["latest"] = [rank, values]
        changed = True
    return state, changed


def worker_expires_at(state: WorkerState, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> float | None:
    """When the worker counts as gone if no further heartbeat arrives."""
    alive = [t for t in (state["online"], state["heartbeat"]) if t is not None]
    if not alive:
        return None
    freq = (state["latest"][1].get("freq") if state["latest"] else None) or DEFAULT_FREQ
    return max(alive) + expiry_factor * freq


def derive_worker(state: WorkerState, now: float | None, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> dict:
    """The worker record; liveness is judged at ``now`` (None: only what the events say)."""
    online, heartbeat, offline = state["online"], state["heartbeat"], state["offline"]
    alive = max((t for t in (online, heartbeat) if t is not None), default=None)
    expires_at = worker_expires_at(state, expiry_factor)
    reason = None
    if offline is not None and (alive is None or offline >= alive):
        status, reason = OFFLINE, OFFLINE_LEFT
    elif now is not None and expires_at is not None and now > expires_at:
        status, reason = OFFLINE, OFFLINE_HEARTBEAT_EXPIRED
    elif heartbeat is not None and (online is None or heartbeat > online):
        status = HEARTBEAT
    else:
        status = ONLINE
    latest = state["latest"][1] if state["latest"] else {}
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
        "expires_at": expires_at,
    }
