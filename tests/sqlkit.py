"""Test helpers: the same SQL on chdb (ClickHouse 26.x in-process) and on the 18.16 server."""

from __future__ import annotations

import datetime as dt
import json
import re

from streams.engine import Tracker
from streams.sink.rows import (
    EVENT_COLUMNS,
    QUEUE_LENGTH_COLUMNS,
    TASK_COLUMNS,
    WORKER_COLUMNS,
    event_row,
    queue_length_row,
    task_row,
    worker_row,
)


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S}'"
    if isinstance(value, dt.date):
        return f"'{value:%Y-%m-%d}'"
    if isinstance(value, tuple):  # as clickhouse-driver binds them: a tuple is a tuple (x IN %(t)s)...
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if isinstance(value, list):  # ...and a list an array
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def bind(sql: str, params: dict | None) -> str:
    return re.sub(r"%\((\w+)\)s", lambda m: literal(params[m.group(1)]), sql) if params else sql


def insert_sql(db: str, table: str, columns, rows) -> str:
    values = ",\n".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {db}.{table} ({', '.join(columns)}) VALUES {values}"


class Chdb:
    """execute(sql) -> rows; query(sql, params) -> (columns, rows), like the driver adapter."""

    def __init__(self, path: str):
        from chdb import session

        self.session = session.Session(path)
        self.session.query("SET output_format_json_quote_64bit_integers = 0")

    def execute(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self.query(sql, params)[1]

    def query(self, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
        result = self.session.query(bind(sql, params), "JSONCompact")
        text = result.bytes()
        if not text.strip():
            return [], []
        data = json.loads(text)
        return [m["name"] for m in data["meta"]], [tuple(r) for r in data["data"]]

    def close(self) -> None:
        self.session.close()


def dataset(scenario_events, cluster: str = "fx"):
    """Rows for every table from the real captures: (task rows, worker rows, event rows, records)."""
    tracker = Tracker()
    for value in scenario_events:
        tracker.feed(value, cluster)
    records = list(tracker.task_records())
    tasks = [task_row(r) for r in records]
    workers = [worker_row(r) for r in tracker.worker_records()]
    events = [event_row({"cluster": cluster, "bridge": "b", "seq": i, "received_at": 0.0, "event": e}) for i, e in enumerate(scenario_events)]
    queues = [queue_length_row(r) for r in queue_samples(cluster, min(e["timestamp"] for e in scenario_events))]
    tables = {"tasks": (TASK_COLUMNS, tasks), "workers": (WORKER_COLUMNS, workers), "events": (EVENT_COLUMNS, events)}
    tables["queue_lengths"] = (QUEUE_LENGTH_COLUMNS, queues)
    return tables, records


def queue_samples(cluster: str, start: float, minutes: int = 3, every: float = 10.0) -> list[dict]:
    """Queue-length samples as the bridge writes them: a task queue filling up, a Redis-like one
    without consumer counts, and the bridge's own queue (schemas/queue-length.v1.json)."""
    samples = []
    for i in range(int(minutes * 60 / every)):
        at = start + i * every
        for queue, role, messages, consumers, workers in (
            ("celery", "task", 5 * i, 2, 2),
            ("priority", "task", 100 - i, None, 1),
            (f"celery-monitor.bridge.{cluster}", "bridge", i % 3, 1, None),
        ):
            samples.append({
                "v": 1, "kind": "queue-length", "cluster": cluster, "queue": queue, "role": role,
                "transport": "amqp" if consumers is not None else "redis", "present": True, "messages": messages,
                "consumers": consumers, "workers": workers, "processes": None if workers is None else 4 * workers,
                "sampled_at": at, "interval": every, "bridge": "b",
            })  # fmt: skip
    return samples
