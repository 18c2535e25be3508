"""Records and packs -> ClickHouse rows (pure; column lists match sql/migrations)."""

from __future__ import annotations

import datetime as dt
import functools

import orjson

TASK_COLUMNS = (
    "cluster", "uuid", "name", "state", "retries", "revocation_reason", "signum", "rejection", "requeues", "cancels",
    "exception", "exception_type", "traceback", "result", "runtime", "args", "kwargs", "eta", "expires",
    "root_id", "parent_id", "queue", "exchange", "routing_key", "worker", "client", "orphaned_at",
    "queued_at", "received_at", "started_at", "succeeded_at", "failed_at", "retried_at", "rejected_at",
    "revoked_at", "first_seen_at", "last_seen_at", "seen_at", "first_seen", "events_count", "version",
)  # fmt: skip
WORKER_COLUMNS = (
    "cluster", "hostname", "state", "offline_reason", "pid", "freq", "active", "processed", "loadavg",
    "sw_ident", "sw_ver", "sw_sys", "online_at", "heartbeat_at", "offline_at", "seen_at", "expires_at", "judged_at",
    "skew", "updated_at", "version",
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
    values["cancels"] = record.get("cancels") or 0
    # A worker loss tags a task without a new event: the tagged record must replace the other.
    values["version"] = 2 * record["events_count"] + (record.get("orphaned_at") is not None)
    return tuple(values.get(col) for col in TASK_COLUMNS)


def worker_row(record: dict) -> tuple:
    values = dict(record)
    # The monitor's clock only (receive times, the watermark): a worker whose own clock is behind
    # must not make its newer records look older.
    updated = max(record.get("seen_at") or 0.0, record.get("judged_at") or 0.0)
    if not updated:  # a record from before receive times were kept: the worker's own times
        facts = [t for t in (record.get("online_at"), record.get("heartbeat_at"), record.get("offline_at")) if t]
        updated = max([*facts, record.get("evaluated_at") or 0])
    values["updated_at"] = updated
    values["version"] = int(updated * 1000)
    values["loadavg"] = [float(x) for x in (record.get("loadavg") or []) if isinstance(x, (int, float))]
    values["cluster"] = values.get("cluster") or ""
    return tuple(values.get(col) for col in WORKER_COLUMNS)


class EventColumns:
    """Rows of the ``events`` table built column by column, straight from decoded packs.

    One list per column of EVENT_COLUMNS (what clickhouse-driver sends with ``columnar=True``):
    no tuple per row and no transposition. ``body`` is the event as orjson writes it, as bytes
    (the driver sends bytes as they are; a str would be encoded again).
    """

    __slots__ = ("columns", "size", "skipped")

    def __init__(self) -> None:
        self.columns: tuple[list, ...] = tuple([] for _ in EVENT_COLUMNS)
        self.size = 0
        self.skipped = 0

    def add_pack(self, pack: dict) -> int:
        """Every usable event of one decoded pack; returns the rows added. Entries whose event
        is not an object with a numeric timestamp are skipped (counted in ``skipped``)."""
        entries = pack.get("events")
        if entries.__class__ is not list:
            self.skipped += 1
            return 0
        cluster = pack.get("cluster") or ""
        bridge = str(pack.get("bridge") or "")
        (c_cluster, c_type, c_uuid, c_hostname, c_pid, c_clock, c_timestamp, c_date, c_time, c_name,
         c_bridge, c_seq, c_received, c_body) = (column.append for column in self.columns)  # fmt: skip
        dumps, date = orjson.dumps, _date
        added = 0
        for entry in entries:
            event = entry.get("event") if entry.__class__ is dict else None
            if event.__class__ is not dict:
                self.skipped += 1
                continue
            ts = event.get("timestamp")
            if ts.__class__ is not float:
                if ts.__class__ is bool or not isinstance(ts, (int, float)):
                    self.skipped += 1
                    continue
                ts = float(ts)
            get = event.get
            etype, uuid, hostname, name, pid, clock = get("type"), get("uuid"), get("hostname"), get("name"), get("pid"), get("clock")
            when = int(ts)
            c_cluster(cluster)
            c_type(etype if etype.__class__ is str else "")
            c_uuid(uuid if uuid.__class__ is str else "")
            c_hostname(hostname if hostname.__class__ is str else "")
            c_pid(pid if pid.__class__ is int and pid >= 0 else 0)
            c_clock(clock if clock.__class__ is int and clock >= 0 else 0)
            c_timestamp(ts)
            c_date(date(when // 86400))
            c_time(when)
            c_name(name if name.__class__ is str else "")
            c_bridge(bridge)
            c_seq(int(entry.get("seq") or 0))
            c_received(float(entry.get("received_at") or 0.0))
            c_body(dumps(event))
            added += 1
        self.size += added
        return added

    def rows(self) -> list[tuple]:
        return list(zip(*self.columns))


def event_row(envelope: dict) -> tuple | None:
    """One event with its bridge fields (cluster, bridge, seq, received_at, event) -> an events
    row; None when it carries no usable event. (The sink itself builds columns: EventColumns.)"""
    columns = EventColumns()
    fields = {"seq": envelope.get("seq"), "received_at": envelope.get("received_at"), "event": envelope.get("event")}
    columns.add_pack({"cluster": envelope.get("cluster"), "bridge": envelope.get("bridge"), "events": [fields]})
    rows = columns.rows()
    return rows[0] if rows else None


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
