"""Records and envelopes -> ClickHouse rows (pure; column lists match sql/migrations)."""

from __future__ import annotations

import datetime as dt
import functools

import orjson

TASK_COLUMNS = (
    "cluster", "uuid", "name", "state", "retries", "revocation_reason", "signum", "rejection", "requeues",
    "exception", "exception_type", "traceback", "result", "runtime", "args", "kwargs", "eta", "expires",
    "root_id", "parent_id", "queue", "exchange", "routing_key", "worker", "client",
    "queued_at", "received_at", "started_at", "succeeded_at", "failed_at", "retried_at", "rejected_at",
    "revoked_at", "first_seen_at", "last_seen_at", "first_seen", "events_count", "version",
)  # fmt: skip
WORKER_COLUMNS = (
    "cluster", "hostname", "state", "offline_reason", "pid", "freq", "active", "processed", "loadavg",
    "sw_ident", "sw_ver", "sw_sys", "online_at", "heartbeat_at", "offline_at", "expires_at", "updated_at", "version",
)  # fmt: skip
EVENT_COLUMNS = (
    "cluster", "type", "uuid", "hostname", "pid", "clock", "timestamp", "event_date", "event_time",
    "name", "bridge", "seq", "received_at", "body",
)  # fmt: skip

QUEUE_LENGTH_COLUMNS = (
    "cluster", "queue", "role", "transport", "present", "messages", "consumers", "workers", "processes",
    "sampled_at", "sampled_time", "sampled_date", "bridge",
)  # fmt: skip

_NOT_NULL_STR = {"cluster", "uuid", "name", "state", "hostname"}


_EPOCH = dt.date(1970, 1, 1)


def _datetime(ts: float) -> int:
    # DateTime columns take epoch seconds as they are (clickhouse-driver skips its timezone
    # conversion for ints; a datetime object per row cost 13 % of the sink's time).
    return int(ts)


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def task_row(record: dict) -> tuple:
    values = dict(record)
    for col in _NOT_NULL_STR:
        if values.get(col) is None:
            values[col] = ""
    values["first_seen"] = _datetime(record["first_seen_at"] or 0)
    values["version"] = record["events_count"]
    return tuple(values.get(col) for col in TASK_COLUMNS)


def worker_row(record: dict) -> tuple:
    values = dict(record)
    facts = [t for t in (record.get("online_at"), record.get("heartbeat_at"), record.get("offline_at")) if t]
    updated = max([*facts, record.get("evaluated_at") or 0])
    values["updated_at"] = updated
    values["version"] = int(updated * 1000)
    values["loadavg"] = [float(x) for x in (record.get("loadavg") or []) if isinstance(x, (int, float))]
    values["cluster"] = values.get("cluster") or ""
    return tuple(values.get(col) for col in WORKER_COLUMNS)


def event_row(envelope: dict) -> tuple | None:
    """A bridge envelope -> an events row; None when it carries no usable event."""
    event = envelope.get("event")
    if not isinstance(event, dict):
        return None
    ts = event.get("timestamp")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return None

    def integer(name: str) -> int:
        value = event.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    def text(name: str) -> str:
        value = event.get(name)
        return value if isinstance(value, str) else ""

    when = int(ts)
    return (
        envelope.get("cluster") or "",
        text("type"),
        text("uuid"),
        text("hostname"),
        integer("pid"),
        integer("clock"),
        float(ts),
        _date(when // 86400),
        when,
        text("name"),
        str(envelope.get("bridge") or ""),
        int(envelope.get("seq") or 0),
        float(envelope.get("received_at") or 0.0),
        orjson.dumps(event).decode(),
    )


def queue_length_row(record: dict) -> tuple:
    """A queue-length sample (schemas/queue-length.v1.json) -> a queue_lengths row."""
    at = float(record["sampled_at"])
    when = int(at)
    return (
        record["cluster"],
        record["queue"],
        record.get("role") or "task",
        record.get("transport") or "",
        1 if record.get("present", True) else 0,
        int(record["messages"]),
        record.get("consumers"),
        record.get("workers"),
        record.get("processes"),
        at,
        when,
        _date(when // 86400),
        record.get("bridge") or "",
    )
