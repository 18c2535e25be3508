"""Turning raw Celery event bodies into validated engine events (no I/O).

Accepted shapes (one JSON value each):
  * an event object, as Celery's Receiver handlers get it or as the worker published it;
  * a list of event objects (a raw ``task.multi`` body);
  * a bridge envelope ``{"v": 1, "cluster": ..., "event": {...}}`` (see schemas/envelope.v1.json);
  * a capture record ``{"routing_key": ..., "body": <event or list>}`` (../shared/fixtures format).

Nothing here raises on bad input: an unusable value becomes an :class:`Invalid` with a reason.
"""

from __future__ import annotations

from typing import Any, Iterator

from .states import (
    FIELDS_READ_BY_TYPE,
    NUMBER,
    REJECTED_KIND,
    TASK_EVENT_KINDS,
    WORKER_EVENT_TYPES,
    WORKER_FIELD_TYPES,
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
    """A validated task event. ``identity`` is what makes two deliveries the same event."""

    __slots__ = ("kind", "uuid", "cluster", "hostname", "pid", "clock", "timestamp", "identity", "body")

    def __init__(self, kind, uuid, cluster, hostname, pid, clock, timestamp, identity, body):
        self.kind = kind
        self.uuid = uuid
        self.cluster = cluster
        self.hostname = hostname
        self.pid = pid
        self.clock = clock
        self.timestamp = timestamp
        self.identity = identity
        self.body = body

    @property
    def key(self) -> str:
        return task_key(self.cluster, self.uuid)


class WorkerEvent:
    """A validated worker event (worker-online / worker-heartbeat / worker-offline)."""

    __slots__ = ("type", "cluster", "hostname", "pid", "clock", "timestamp", "body")

    def __init__(self, type, cluster, hostname, pid, clock, timestamp, body):
        self.type = type
        self.cluster = cluster
        self.hostname = hostname
        self.pid = pid
        self.clock = clock
        self.timestamp = timestamp
        self.body = body

    @property
    def key(self) -> str:
        return worker_key(self.cluster, self.hostname)


def task_key(cluster: str | None, uuid: str) -> str:
    """Table key of a task: cluster-scoped, so two clusters can never collide."""
    return f"{cluster or ''}/{uuid}"


def worker_key(cluster: str | None, hostname: str) -> str:
    """Key of a worker: hostnames repeat across clusters (celery@host), so the cluster is in it."""
    return f"{cluster or ''}/{hostname}"


def _bad_type(body: dict, types: dict) -> str | None:
    for field, expected in types.items():
        value = body.get(field)
        if value is None:
            continue
        # bool is an int in Python; a flag where a count belongs is a wrong type.
        if not isinstance(value, expected) or (value.__class__ is bool and expected is not bool):
            return f"field {field!r} has type {type(value).__name__}"
    return None


def parse_event(body: Any, cluster: str | None = None) -> TaskEvent | WorkerEvent | Invalid:
    """Validate one event object. Never raises."""
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
    if timestamp.__class__ is not float:
        if timestamp.__class__ is bool or not isinstance(timestamp, NUMBER):
            return Invalid("field 'timestamp' is missing or not a number", body)
        timestamp = float(timestamp)

    fields = FIELDS_READ_BY_TYPE.get(etype)
    if fields is not None:  # a task event
        uuid = body.get("uuid")
        if uuid.__class__ is not str or not uuid:
            return Invalid("task event without a 'uuid' string", body)
        if fields:
            bad = _bad_type(body, fields)
            if bad:
                return Invalid(bad, body)
        kind = TASK_EVENT_KINDS[etype]
        if kind is None:  # task-rejected: requeue decides
            kind = REJECTED_KIND[bool(body.get("requeue"))]
        # Identity: the same event delivered twice has the same producer, process, Lamport
        # clock and timestamp.  Two distinct events of one task never share all four.
        identity = f"{etype}|{hostname}|{pid}|{clock}|{timestamp!r}"
        return TaskEvent(kind, uuid, cluster, hostname, pid, clock, timestamp, identity, body)

    if etype in WORKER_EVENT_TYPES:
        if not hostname:
            return Invalid("worker event without a 'hostname'", body)
        bad = _bad_type(body, WORKER_FIELD_TYPES)
        if bad:
            return Invalid(bad, body)
        return WorkerEvent(etype, cluster, hostname, pid, clock, timestamp, body)

    return Invalid(f"unknown event type {etype[:80]!r}", body)


def iter_events(value: Any, cluster: str | None = None) -> Iterator[TaskEvent | WorkerEvent | Invalid]:
    """Every event in one decoded JSON value, whatever accepted shape it has."""
    if isinstance(value, list):
        if not value:
            yield Invalid("empty event list", value)
        for item in value:
            yield parse_event(item, cluster)
        return
    if isinstance(value, dict) and "type" not in value:
        if "event" in value:  # bridge envelope
            env_cluster = value.get("cluster", cluster)
            if env_cluster is not None and not isinstance(env_cluster, str):
                yield Invalid("envelope 'cluster' is not a string", value)
                return
            yield parse_event(value["event"], env_cluster)
            return
        if "body" in value:  # capture record: {routing_key, body}
            yield from iter_events(value["body"], cluster)
            return
    yield parse_event(value, cluster)
