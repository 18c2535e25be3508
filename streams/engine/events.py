"""Turning raw Celery event bodies into validated engine events (no I/O).

Accepted shapes (one JSON value each), and where each says the event was *received* (the
monitor's clock, which liveness and cross-host ordering use):
  * an event object, as Celery's Receiver handlers get it (``local_received``) or as the worker
    published it (no receive time);
  * a list of event objects (a raw ``task.multi`` body);
  * a bridge pack ``{"v": 2, "cluster", "bridge", "read_until", "events": [{seq, received_at,
    routing_key, event}...], "seen": [...]}`` (schemas/pack.v2.json): its events, a
    :class:`Sighting` per ``seen`` entry and one :class:`Tick` (how far the bridge had read);
  * a bridge envelope ``{"v": 1, "cluster", "received_at", "event": {...}}`` (schemas/envelope.v1.json);
  * a capture record ``{"routing_key", "recv_time", "body": <event or list>}`` (../shared/fixtures format).

Nothing here raises on bad input: an unusable value becomes an :class:`Invalid` with a reason.
A well-formed event of a type the rules do not know is not invalid: a task-* type becomes a
TaskEvent of kind ``other``, a worker-* type a WorkerEvent (a sign of life), any other type an
:class:`OtherEvent` (kept and counted, no state).
"""

from __future__ import annotations

from typing import Any, Iterator

from ..packs import PACK_VERSION  # pure (orjson only): the engine stays free of I/O
from .states import (
    FIELDS_READ_BY_TYPE,
    LEGACY_FIELDS,
    LEGACY_SIGNALS,
    MAX_TIMESTAMP,
    NUMBER,
    OTHER_K,
    REJECTED_KIND,
    TASK_EVENT_KINDS,
    TASK_PREFIX,
    WORKER_FIELD_TYPES,
    WORKER_PREFIX,
)



class Invalid:
    """An input that is not a usable event; ``reason`` says why (it goes to the dead letters)."""

    __slots__ = ("reason", "raw")

    def __init__(self, reason: str, raw: Any):
        self.reason = reason
        self.raw = raw

    def __repr__(self) -> str:
        return f"Invalid({self.reason!r})"


class TaskEvent:
    """A validated task event.

    ``(type, hostname, pid, clock, timestamp)`` is what makes two deliveries the same event;
    ``received`` is when the monitor received it (epoch seconds on the monitor's clock), None
    when the input does not say; ``type`` is kept for kind ``other``.
    """

    __slots__ = ("kind", "type", "uuid", "cluster", "hostname", "pid", "clock", "timestamp", "received", "body")

    def __init__(self, kind, type, uuid, cluster, hostname, pid, clock, timestamp, received, body):
        self.kind = kind
        self.type = type
        self.uuid = uuid
        self.cluster = cluster
        self.hostname = hostname
        self.pid = pid
        self.clock = clock
        self.timestamp = timestamp
        self.received = received
        self.body = body

    @property
    def identity(self) -> str:
        return f"{self.type}|{self.hostname}|{self.pid}|{self.clock}|{self.timestamp!r}"

    @property
    def key(self) -> str:
        return task_key(self.cluster, self.uuid)


class WorkerEvent:
    """A validated worker-* event; ``received`` as on TaskEvent."""

    __slots__ = ("type", "cluster", "hostname", "pid", "clock", "timestamp", "received", "body")

    def __init__(self, type, cluster, hostname, pid, clock, timestamp, received, body):
        self.type = type
        self.cluster = cluster
        self.hostname = hostname
        self.pid = pid
        self.clock = clock
        self.timestamp = timestamp
        self.received = received
        self.body = body

    @property
    def key(self) -> str:
        return worker_key(self.cluster, self.hostname)


class OtherEvent:
    """A well-formed event of neither the task-* nor the worker-* group (e.g. a custom event
    sent through celeryev): kept (stored, counted), read by no rule, as Celery's State ignores it."""

    __slots__ = ("type", "cluster", "hostname", "timestamp", "received", "body")

    def __init__(self, type, cluster, hostname, timestamp, received, body):
        self.type = type
        self.cluster = cluster
        self.hostname = hostname
        self.timestamp = timestamp
        self.received = received
        self.body = body


class Sighting:
    """Task events of one worker seen by the bridge in one flush (a pack's ``seen`` entry).

    A sign of life for the worker, delivered in the worker's own partition: ``received`` is the
    latest receive time (monitor clock), ``timestamp`` the greatest event timestamp (the
    worker's clock), ``events`` how many task events it stands for.
    """

    __slots__ = ("cluster", "hostname", "received", "timestamp", "events", "pid")

    def __init__(self, cluster, hostname, received, timestamp, events, pid=None):
        self.cluster = cluster
        self.hostname = hostname
        self.received = received
        self.timestamp = timestamp
        self.events = events
        self.pid = pid  # the worker process that sent them; None from an older bridge

    @property
    def key(self) -> str:
        return worker_key(self.cluster, self.hostname)


class Tick:
    """A pack's ``read_until``: the bridge of ``cluster`` had read everything its broker had up
    to this time (monitor clock), so silence before it is real silence."""

    __slots__ = ("cluster", "read_until")

    def __init__(self, cluster, read_until):
        self.cluster = cluster
        self.read_until = read_until


def task_key(cluster: str | None, uuid: str) -> str:
    """Table key of a task: cluster-scoped, so two clusters can never collide."""
    return f"{cluster or ''}/{uuid}"


def worker_key(cluster: str | None, hostname: str) -> str:
    """Key of a worker: hostnames repeat across clusters (celery@host), so the cluster is in it."""
    return f"{cluster or ''}/{hostname}"


def _exact_classes(types: dict) -> tuple:
    """(field, the exact classes allowed) pairs: decoded JSON has exact classes, and a class
    check is a set lookup. bool is not in an int's set: a flag where a count belongs is wrong."""
    return tuple((f, frozenset(t if isinstance(t, tuple) else (t,))) for f, t in types.items())


_TASK_CHECKS = {etype: _exact_classes(fields) for etype, fields in FIELDS_READ_BY_TYPE.items()}
_WORKER_CHECKS = _exact_classes(WORKER_FIELD_TYPES)


def _bad_type(body: dict, checks: tuple) -> str | None:
    get = body.get
    for field, classes in checks:
        value = get(field)
        if value is not None:
            if value.__class__ not in classes:
                return f"field {field!r} has type {type(value).__name__}"
            if value.__class__ is int and not 0 <= value < 4_294_967_296:  # the UInt32 columns' range
                return f"field {field!r} is out of range (0 - 2**32-1)"
    return None


def _signal(value: Any) -> Any:
    if value.__class__ is str:
        text = value.strip().upper()
        if text.isdigit():
            return int(text)
        return LEGACY_SIGNALS.get(text if text.startswith("SIG") else f"SIG{text}", value)
    return value


def _flag(value: Any) -> Any:
    return bool(value) if value.__class__ is int and value in (0, 1) else value


_NORMALISE = {"signal": _signal, "flag": _flag}


def _legacy(body: dict) -> dict | None:
    """A copy of ``body`` with older Celery shapes of the fields the rules read normalised
    (states.LEGACY_FIELDS); None when nothing was changed. The raw event keeps what was sent."""
    out = None
    for field, how in LEGACY_FIELDS.items():
        value = body.get(field)
        if value is not None:
            normal = _NORMALISE[how](value)
            if normal is not value:
                if out is None:
                    out = dict(body)
                out[field] = normal
    return out


def _receipt(value: Any) -> float | None:
    if value.__class__ is float:
        return value
    if value.__class__ is int:
        return float(value)
    return None


def parse_event(
    body: Any, cluster: str | None = None, received: float | None = None
) -> TaskEvent | WorkerEvent | OtherEvent | Invalid:
    """Validate one event object. Never raises.

    ``received``: when the monitor received it (monitor clock); without it, a handler-view
    event's own ``local_received`` (set by Celery's Receiver) is used when present.
    """
    if body.__class__ is not dict and not isinstance(body, dict):
        return Invalid(f"event is a {type(body).__name__}, not an object", body)
    etype = body.get("type")
    if etype.__class__ is not str and not isinstance(etype, str):
        return Invalid("field 'type' is missing or not a string", body)
    # The identity fields every event has (inlined: this is the hottest path of the pipeline).
    hostname = body.get("hostname")
    pid = body.get("pid")
    clock = body.get("clock")
    timestamp = body.get("timestamp")
    if hostname is None:
        hostname = ""
    elif hostname.__class__ is not str and not isinstance(hostname, str):
        return Invalid("field 'hostname' is not a string", body)
    if pid is None:
        pid = 0
    if clock is None:
        clock = 0
    if pid.__class__ is not int or clock.__class__ is not int:
        return Invalid("field 'pid' or 'clock' is not an integer", body)
    if not (0 <= pid < 4_294_967_296 and 0 <= clock < 18_446_744_073_709_551_616):
        return Invalid("field 'pid' or 'clock' is out of range (pid: 0 - 2**32-1, clock: 0 - 2**64-1)", body)
    if timestamp.__class__ is not float:
        if timestamp.__class__ is bool or not isinstance(timestamp, NUMBER):
            return Invalid("field 'timestamp' is missing or not a number", body)
        timestamp = float(timestamp)
    if not 0.0 <= timestamp < MAX_TIMESTAMP:
        return Invalid("field 'timestamp' is out of range (epoch seconds from 1970 to 2106; milliseconds?)", body)
    if received is None:
        local = body.get("local_received")
        if local is not None:
            received = _receipt(local)

    fields = _TASK_CHECKS.get(etype)
    if fields is not None or etype.startswith(TASK_PREFIX):  # a task event
        uuid = body.get("uuid")
        if uuid.__class__ is not str or not uuid:
            return Invalid("task event without a 'uuid' string", body)
        if fields:
            bad = _bad_type(body, fields)
            if bad:
                legacy = _legacy(body)  # an older Celery's shape (signum as text), normalised
                if legacy is not None:
                    bad = _bad_type(legacy, fields)
                if bad:
                    return Invalid(bad, body)
                body = legacy
        if fields is None:
            kind = OTHER_K
        else:
            kind = TASK_EVENT_KINDS[etype]
            if kind is None:  # task-rejected: requeue decides
                kind = REJECTED_KIND[bool(body.get("requeue"))]
        for name in LARGE_FIELDS:
            value = body.get(name)
            if value.__class__ is str and len(value) > MAX_FIELD_CHARS:
                body = _cut(body)
                break
        return TaskEvent(kind, etype, uuid, cluster, hostname, pid, clock, timestamp, received, body)

    if etype.startswith(WORKER_PREFIX):
        if not hostname:
            return Invalid("worker event without a 'hostname'", body)
        bad = _bad_type(body, _WORKER_CHECKS)
        if bad:
            return Invalid(bad, body)
        return WorkerEvent(etype, cluster, hostname, pid, clock, timestamp, received, body)

    if not etype or len(etype) > 200:
        return Invalid(f"event type {etype[:80]!r} is empty or too long", body)
    return OtherEvent(etype, cluster, hostname, timestamp, received, body)


# Text fields a task's record keeps (Celery sends them as reprs): a record, its table value and
# changelog must fit a Kafka record (1 MB), so each is kept up to MAX_FIELD_CHARS; the raw event,
# whole, stays in ClickHouse `events`.
LARGE_FIELDS = ("args", "kwargs", "result", "exception", "traceback")
MAX_FIELD_CHARS = 64 * 1024


def _cut(body: dict) -> dict:
    out = dict(body)
    for name in LARGE_FIELDS:
        value = out.get(name)
        if value.__class__ is str and len(value) > MAX_FIELD_CHARS:
            out[name] = f"{value[:MAX_FIELD_CHARS]}… [{len(value) - MAX_FIELD_CHARS:,} more characters in the raw event]"
    return out


Item = TaskEvent | WorkerEvent | OtherEvent | Sighting | Tick | Invalid


def iter_events(value: Any, cluster: str | None = None, received: float | None = None) -> Iterator[Item]:
    """Every event in one decoded JSON value, whatever accepted shape it has."""
    if isinstance(value, list):
        if not value:
            yield Invalid("empty event list", value)
        for item in value:
            yield parse_event(item, cluster, received)
        return
    if isinstance(value, dict) and "type" not in value:
        if "events" in value and value.get("v") == PACK_VERSION:
            yield from iter_pack(value)
            return
        if "event" in value:  # bridge envelope (v1)
            env_cluster = value.get("cluster", cluster)
            if env_cluster is not None and not isinstance(env_cluster, str):
                yield Invalid("envelope 'cluster' is not a string", value)
                return
            yield parse_event(value["event"], env_cluster, _receipt(value.get("received_at")))
            return
        if "body" in value:  # capture record: {routing_key, recv_time, body}
            yield from iter_events(value["body"], cluster, _receipt(value.get("recv_time")))
            return
    yield parse_event(value, cluster, received)


def iter_pack(pack: dict) -> Iterator[Item]:
    """The items of one bridge pack (schemas/pack.v2.json): its events in order, a Sighting per
    ``seen`` entry, then a Tick. A bad entry is one Invalid; the rest of the pack still counts."""
    cluster = pack.get("cluster")
    if cluster is not None and cluster.__class__ is not str:
        yield Invalid("pack 'cluster' is not a string", pack)
        return
    entries = pack.get("events")
    if entries.__class__ is not list:
        yield Invalid("pack 'events' is not a list", pack)
        return
    for entry in entries:
        if entry.__class__ is not dict:
            yield Invalid(f"pack entry is a {type(entry).__name__}, not an object", entry)
            continue
        yield parse_event(entry.get("event"), cluster, _receipt(entry.get("received_at")))
    for seen in pack.get("seen") or ():
        hostname = seen.get("hostname") if seen.__class__ is dict else None
        received = _receipt(seen.get("received_at")) if hostname else None
        if hostname.__class__ is not str or not hostname or received is None:
            yield Invalid("pack 'seen' entry without a hostname string and a received_at number", seen)
            continue
        events = seen.get("events")
        pid = seen.get("pid")
        yield Sighting(cluster, hostname, received, _receipt(seen.get("timestamp")), events if events.__class__ is int else 1,
                       pid if pid.__class__ is int else None)  # fmt: skip
    read_until = _receipt(pack.get("read_until"))
    if read_until is not None:
        yield Tick(cluster, read_until)
