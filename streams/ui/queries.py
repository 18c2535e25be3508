"""Every ClickHouse query of the web UI, one function each.

Every value that comes from a request is a parameter (``%(name)s``, bound by clickhouse-driver —
or by the tests' chdb adapter); the only text put into the SQL is the database name (configuration),
column names taken from ``system.columns`` intersected with fixed lists in this module, and fixed
fragments chosen by code (``_in_cluster``), so no SQL is ever built from user input.

Each function takes ``execute(sql, params) -> (column names, rows)`` — the app's ClickHouse pool
(streams/ui/db.py) or chdb in the tests — and runs on ClickHouse 18.16 and on modern ClickHouse
(tests/unit/ui/test_queries_modern.py, tests/integration/test_ui_queries_both_servers.py): no
window functions, no CTEs, no JSON functions (event bodies are parsed in Python).

``tasks FINAL`` / ``workers FINAL``: a WHERE on a FINAL read filters the merged (latest) row, not
older versions — a task that moved from STARTED to SUCCEEDED never matches ``state = 'STARTED'``
(checked on both servers by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from streams import search as search_mod

from . import badges

Execute = Callable[[str, dict], tuple[list[str], list[tuple]]]

TRUNCATE_CHARS = 300  # list and graph cells: a 50 kB task name is cut here (the task page shows it whole)

# The task list's columns, in order; badge fields are added (badges.task_fields) and every one is
# selected only when the table has it (a column the engine adds later appears by itself).
LIST_COLUMNS = (
    "cluster", "uuid", "name", "state", "retries", "worker", "exception_type", "runtime",
    "received_at", "started_at", "first_seen_at", "last_seen_at", "events_count",
)  # fmt: skip
GRAPH_COLUMNS = ("cluster", "uuid", "name", "state", "retries", "parent_id", "root_id", "first_seen_at")
TRUNCATED = frozenset({"name", "worker", "exception_type"})
WORKER_COLUMNS = (
    "cluster", "hostname", "state", "offline_reason", "pid", "freq", "active", "processed", "loadavg",
    "sw_ident", "sw_ver", "sw_sys", "online_at", "heartbeat_at", "offline_at", "expires_at", "updated_at",
    "seen_at", "skew",
)  # fmt: skip
EVENT_COLUMNS = ("type", "hostname", "pid", "clock", "timestamp", "received_at", "body")


CUT = "__cut"  # alias suffix of a cut column: an alias named like the column would replace it in WHERE


def _rows(columns: list[str], rows: list[tuple]) -> list[dict]:
    names = [c[: -len(CUT)] if c.endswith(CUT) else c for c in columns]
    return [dict(zip(names, row)) for row in rows]


def _select(wanted: tuple[str, ...], present: frozenset[str], truncate: frozenset[str] = frozenset()) -> str:
    parts = []
    for column in dict.fromkeys(wanted):
        if column not in present:
            continue
        if column in truncate:
            parts.append(f"substringUTF8({column}, 1, {TRUNCATE_CHARS}) AS {column}{CUT}, lengthUTF8({column}) AS {column}_chars")
        else:
            parts.append(column)
    return ", ".join(parts)


def _in_cluster(cluster: str) -> str:
    """The cluster condition: a plain equality on the primary key's first column when a cluster
    is chosen (ClickHouse 18.16 cannot use the index through ``'' = x OR cluster = x``)."""
    return "cluster = %(cluster)s" if cluster else "1"


def table_columns(execute: Execute, db: str, table: str) -> frozenset[str]:
    """Names of the columns ``table`` has now (the engine adds columns over time)."""
    _, rows = execute("SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s", {"db": db, "table": table})
    return frozenset(r[0] for r in rows)


def clusters(execute: Execute, db: str, limit: int) -> list[str]:
    """Cluster names seen in events (the small per-minute table) or among workers, sorted."""
    sql = f"""
        SELECT cluster FROM
        (
            SELECT DISTINCT cluster FROM {db}.events_per_minute
            UNION ALL
            SELECT DISTINCT cluster FROM {db}.workers
        )
        GROUP BY cluster
        ORDER BY cluster
        LIMIT %(limit)s"""
    _, rows = execute(sql, {"limit": limit})
    return [r[0] for r in rows]


def task_names(execute: Execute, db: str, cluster: str, limit: int) -> list[str]:
    """Task names of a cluster ('' = all) for the name filter's suggestions (names up to 200 characters)."""
    sql = f"""
        SELECT name FROM {db}.tasks
        WHERE {_in_cluster(cluster)} AND name != '' AND lengthUTF8(name) <= 200
        GROUP BY name
        ORDER BY name
        LIMIT %(limit)s"""
    _, rows = execute(sql, {"cluster": cluster, "limit": limit})
    return [r[0] for r in rows]


def worker_names(execute: Execute, db: str, cluster: str, limit: int) -> list[str]:
    """Worker hostnames of a cluster ('' = all) for the worker filter's suggestions."""
    sql = f"""
        SELECT hostname FROM {db}.workers
        WHERE {_in_cluster(cluster)} AND lengthUTF8(hostname) <= 200
        GROUP BY hostname
        ORDER BY hostname
        LIMIT %(limit)s"""
    _, rows = execute(sql, {"cluster": cluster, "limit": limit})
    return [r[0] for r in rows]


@dataclass(frozen=True)
class TaskFilter:
    """The task list's filters; '' / 0 / () = no filter.

    ``states``: any of these states; ``since``/``until``: first seen in [since, until) (epoch s);
    ``uuid``: the task id, or its beginning; ``name``: a substring of the name (case-insensitive)
    or a glob (``*``, ``?``); ``search``: terms of the search box (streams/search.py)."""

    cluster: str = ""
    states: tuple[str, ...] = ()
    name: str = ""
    worker: str = ""
    uuid: str = ""
    since: float = 0.0
    until: float = 0.0
    search: tuple = ()

    def terms(self) -> tuple:
        """The name filter as a search term, then the search box's terms."""
        return ((search_mod.Term("name", self.name),) if self.name else ()) + tuple(self.search)

    def where(self) -> str:
        """The filter's conditions (after a WHERE on the cluster); values in ``params()``."""
        return TASK_WHERE + search_mod.condition(self.terms())[0]

    def params(self) -> dict:
        return {**search_mod.condition(self.terms())[1], 
            "cluster": self.cluster,
            "any_state": 0 if self.states else 1,
            "states": tuple(self.states) or ("",),
                "worker": self.worker,
            "uuid": self.uuid,
            "since": float(self.since),
            "until": float(self.until),
        }


TASK_WHERE = """
    AND (%(any_state)s = 1 OR state IN %(states)s)
    AND (%(worker)s = '' OR worker = %(worker)s)
    AND (%(uuid)s = '' OR startsWith(uuid, %(uuid)s))
    AND first_seen_at >= %(since)s AND (%(until)s = 0 OR first_seen_at < %(until)s)"""


def _latest(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    """What FINAL would keep of rows read without it: the highest ``version`` per key."""
    out: dict[tuple, dict] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        if k not in out or row["version"] >= out[k]["version"]:
            out[k] = row
    return out


def tasks(
    execute: Execute, db: str, present: frozenset[str], where: TaskFilter, limit: int,
    before: tuple[float, str] | None = None,
) -> list[dict]:  # fmt: skip
    """One page of the task list, newest first (first seen), at most ``limit`` rows.

    Keyset pagination: ``before`` = (first_seen_at, uuid) of the last row of the previous page, so
    a page is the same read whatever the depth and rows do not shift while tasks arrive.

    Two reads: the page's keys from ``tasks FINAL`` (only the key, order and filter columns are
    merged: 4x less than merging every shown column on 250k tasks), then those rows by primary
    key without FINAL, keeping the highest version of each. A task that changed between the two
    reads is shown as it is now; with a state filter it is dropped if it no longer matches."""
    params = {**where.params(), "before_at": before[0] if before else 0.0, "before_uuid": before[1] if before else "", "limit": limit}
    keys_sql = f"""
        SELECT cluster, uuid
        FROM {db}.tasks FINAL
        WHERE {_in_cluster(where.cluster)} {where.where()}
          AND (%(before_at)s = 0 OR first_seen_at < %(before_at)s OR (first_seen_at = %(before_at)s AND uuid < %(before_uuid)s))
        ORDER BY first_seen_at DESC, uuid DESC
        LIMIT %(limit)s"""
    _, keys = execute(keys_sql, params)
    if not keys:
        return []
    columns = _select(LIST_COLUMNS + badges.task_fields() + ("version",), present, TRUNCATED)
    rows_sql = f"""
        SELECT {columns}
        FROM {db}.tasks
        WHERE (cluster, uuid) IN %(keys)s"""
    # A lone key is written twice: ((c, u)) would read as one tuple of two scalars, not a set of one tuple.
    wanted = tuple(tuple(k) for k in keys) * (2 if len(keys) == 1 else 1)
    latest = _latest(_rows(*execute(rows_sql, {"keys": wanted})), ("cluster", "uuid"))
    page = [latest[tuple(k)] for k in keys if tuple(k) in latest]
    return [r for r in page if not where.states or r["state"] in where.states]


def task(execute: Execute, db: str, cluster: str, uuid: str) -> list[dict]:
    """The full record of task ``uuid`` — in ``cluster``, or in every cluster that has it when
    ``cluster`` is '' (a uuid is unique per cluster only)."""
    sql = f"""
        SELECT * FROM {db}.tasks FINAL
        WHERE {_in_cluster(cluster)} AND uuid = %(uuid)s
        ORDER BY cluster
        LIMIT 20"""
    return _rows(*execute(sql, {"cluster": cluster, "uuid": uuid}))


def task_events(execute: Execute, db: str, cluster: str, uuid: str, limit: int) -> list[dict]:
    """The task's distinct raw events, oldest first, at most ``limit``; ``body`` is the event as
    the producer sent it (JSON text, parsed by the caller). Re-inserted duplicates share the
    event identity and are folded by ``LIMIT 1 BY`` (FINAL would cost 4x here)."""
    sql = f"""
        SELECT {', '.join(EVENT_COLUMNS)}
        FROM {db}.events
        WHERE cluster = %(cluster)s AND uuid = %(uuid)s
        ORDER BY timestamp, clock, type, hostname, pid
        LIMIT 1 BY type, hostname, pid, clock, timestamp
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"cluster": cluster, "uuid": uuid, "limit": limit}))


def workflow(execute: Execute, db: str, present: frozenset[str], cluster: str, root: str, limit: int) -> list[dict]:
    """Every task of the workflow whose root is ``root`` (the root itself included), oldest first,
    at most ``limit``: the nodes of the task page's graph.

    A task's ``root_id`` never changes between its versions (every attempt carries the same one),
    so its members are found without FINAL; their rows are then read by primary key and the
    highest version of each kept."""
    keys_sql = f"""
        SELECT DISTINCT uuid
        FROM {db}.tasks
        WHERE cluster = %(cluster)s AND (root_id = %(root)s OR uuid = %(root)s)
        LIMIT %(limit)s"""
    _, keys = execute(keys_sql, {"cluster": cluster, "root": root, "limit": limit})
    if not keys:
        return []
    columns = _select(GRAPH_COLUMNS + badges.task_fields() + ("version",), present, frozenset({"name"}))
    rows_sql = f"""
        SELECT {columns}
        FROM {db}.tasks
        WHERE cluster = %(cluster)s AND uuid IN %(uuids)s"""
    latest = _latest(_rows(*execute(rows_sql, {"cluster": cluster, "uuids": tuple(k[0] for k in keys)})), ("uuid",))
    return sorted(latest.values(), key=lambda r: (r["first_seen_at"], r["uuid"]))


def workers(execute: Execute, db: str, present: frozenset[str], cluster: str, limit: int) -> list[dict]:
    """Every worker's latest record (of ``cluster``, '' = all), by cluster and hostname."""
    columns = _select(WORKER_COLUMNS + badges.worker_fields(), present)
    sql = f"""
        SELECT {columns}
        FROM {db}.workers FINAL
        WHERE {_in_cluster(cluster)}
        ORDER BY cluster, hostname
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"cluster": cluster, "limit": limit}))
