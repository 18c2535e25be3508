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
    exact_name: str = ""  # the API's taskname= (Flower compares whole names)
    received_since: float = 0.0  # the API's received_start / received_end (epoch s)
    received_until: float = 0.0

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
            "exact_name": self.exact_name,
            "received_since": float(self.received_since),
            "received_until": float(self.received_until),
        }


TASK_WHERE = """
    AND (%(any_state)s = 1 OR state IN %(states)s)
    AND (%(worker)s = '' OR worker = %(worker)s)
    AND (%(uuid)s = '' OR startsWith(uuid, %(uuid)s))
    AND first_seen_at >= %(since)s AND (%(until)s = 0 OR first_seen_at < %(until)s)
    AND (%(exact_name)s = '' OR name = %(exact_name)s)
    AND (%(received_since)s = 0 OR received_at > %(received_since)s)
    AND (%(received_until)s = 0 OR received_at < %(received_until)s)"""


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


# The API's sort keys (Flower's: name, state, received, started; '-' = descending) -> columns.
SORT_COLUMNS = {"name": "name", "state": "state", "received": "received_at", "started": "started_at"}


def tasks_sorted(
    execute: Execute, db: str, where: TaskFilter, limit: int, offset: int = 0, sort_by: str = "", descending: bool = False,
) -> list[dict]:  # fmt: skip
    """Whole task records for the Flower-compatible API: ``limit`` rows after ``offset`` in
    ``sort_by``'s order (SORT_COLUMNS; '' = newest first seen first), ties by uuid. Keys from
    ``tasks FINAL``, then their rows by primary key (as ``tasks``); the sort column is chosen from
    the fixed dict, never taken from the request."""
    if sort_by:
        column = SORT_COLUMNS[sort_by]
        direction = "DESC" if descending else "ASC"
        order = f"{column} {direction}, cluster {direction}, uuid {direction}"
    else:
        order = "first_seen_at DESC, cluster DESC, uuid DESC"
    params = {**where.params(), "limit": limit, "offset": offset}
    keys_sql = f"""
        SELECT cluster, uuid
        FROM {db}.tasks FINAL
        WHERE {_in_cluster(where.cluster)} {where.where()}
        ORDER BY {order}
        LIMIT %(offset)s, %(limit)s"""
    _, keys = execute(keys_sql, params)
    if not keys:
        return []
    wanted = tuple(tuple(k) for k in keys) * (2 if len(keys) == 1 else 1)
    latest = _latest(_rows(*execute(f"SELECT * FROM {db}.tasks WHERE (cluster, uuid) IN %(keys)s", {"keys": wanted})), ("cluster", "uuid"))
    return [latest[tuple(k)] for k in keys if tuple(k) in latest]


def queue_lengths(execute: Execute, db: str, cluster: str, limit: int) -> list[dict]:
    """The newest sample of every task queue (role 'task'): cluster, queue, messages, consumers, newest_at."""
    sql = f"""
        SELECT cluster, queue, argMax(messages, sampled_at) AS messages, argMax(consumers, sampled_at) AS consumers,
               max(sampled_at) AS newest_at
        FROM {db}.queue_lengths
        WHERE {_in_cluster(cluster)} AND role = 'task'
        GROUP BY cluster, queue
        ORDER BY cluster, queue
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"cluster": cluster, "limit": limit}))


TREND_BUCKETS = 12


def failure_groups(
    execute: Execute, db: str, cluster: str, terms: tuple = (), since: float = 0.0, now: float = 0.0, limit: int = 100,
) -> list[dict]:  # fmt: skip
    """Failed and critical tasks grouped by cluster, task name, exception type and message
    fingerprint (streams/failures.py), newest group first: count, first/last failure (epoch s),
    workers (how many, and up to 10 names), the latest failure's task, message and traceback, and
    a trend — failures in each of TREND_BUCKETS equal slices of [since or now − 24 h, now).
    ``terms`` (search terms, e.g. the name filter) narrow the failures first; ``since`` is the
    failure's time (a task first seen days ago that failed now is in the last hour's groups)."""
    from streams.failures import FAILED_STATES, FRAGMENT_COLUMN, fingerprint_sql

    search_sql, params = search_mod.condition(tuple(terms), prefix="f")
    start = since if since else now - 86400
    width = max((now - start) / TREND_BUCKETS, 1e-9)
    trend = ", ".join(
        f"countIf(at >= %(trend_start)s + {i} * %(trend_width)s AND at < %(trend_start)s + {i + 1} * %(trend_width)s)"
        for i in range(TREND_BUCKETS)
    )
    sql = f"""
        SELECT cluster, name, exception_type, fingerprint, count() AS count, min(at) AS first_seen, max(at) AS last_seen,
               uniqExact(worker) AS workers_count, arraySlice(groupUniqArray(worker), 1, 10) AS workers,
               argMax(uuid, at) AS latest_uuid, argMax(exception, at) AS latest_exception,
               argMax(traceback, at) AS latest_traceback, [{trend}] AS trend
        FROM
        (
            SELECT cluster, uuid, name, ifNull(exception_type, '') AS exception_type, {fingerprint_sql(FRAGMENT_COLUMN)} AS fingerprint,
                   ifNull(worker, '') AS worker, ifNull(exception, '') AS exception, ifNull(traceback, '') AS traceback,
                   ifNull(failed_at, last_seen_at) AS at
            FROM {db}.tasks FINAL
            WHERE {_in_cluster(cluster)} AND state IN %(failed_states)s AND ifNull(failed_at, last_seen_at) >= %(since)s {search_sql}
        )
        GROUP BY cluster, name, exception_type, fingerprint
        ORDER BY last_seen DESC, count DESC, cluster, name, exception_type, fingerprint
        LIMIT %(limit)s"""
    params.update(cluster=cluster, failed_states=FAILED_STATES, since=float(since), limit=limit,
                  trend_start=float(start), trend_width=float(width))  # fmt: skip
    rows = _rows(*execute(sql, params))
    for row in rows:
        row["trend"] = [int(n) for n in row["trend"]]
        row["workers"] = sorted(row["workers"])
    return rows


def failure_group_search(row: dict) -> str:
    """The search text (streams/search.py) that lists a group's failed tasks."""
    terms = [search_mod.Term("state", "FAILED,CRITICAL")]
    if row["name"]:
        terms.append(search_mod.Term("name", "=" + row["name"]))
    terms.append(search_mod.Term("fingerprint", row["fingerprint"]))
    if row["exception_type"]:
        terms.append(search_mod.Term("exception", row["exception_type"]))
    return " ".join(str(t) for t in terms)


# -- task control's audit (celery-monitor control; sql/migrations/0007_create_audit.sql) -----------
AUDIT_REQUEST_COLUMNS = ("request_id", "cluster", "at", "finished_at", "user", "role", "via", "action", "dry_run", "selection", "phase",
                         "selected", "eligible_count", "done_count", "detail", "control")  # fmt: skip
AUDIT_TASK_COLUMNS = ("request_id", "cluster", "uuid", "at", "user", "action", "dry_run", "phase", "name", "state", "eligible",
                      "reason", "outcome", "detail", "new_uuid")  # fmt: skip


def audit_requests(execute: Execute, db: str, limit: int, request_id: str = "", user: str = "") -> list[dict]:
    """Control requests, newest first (the request rows: uuid '')."""
    sql = f"""
        SELECT {', '.join(AUDIT_REQUEST_COLUMNS)} FROM {db}.audit FINAL
        WHERE uuid = '' AND (%(request_id)s = '' OR request_id = %(request_id)s) AND (%(user)s = '' OR user = %(user)s)
        ORDER BY at DESC, request_id
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"request_id": request_id, "user": user, "limit": limit}))


def audit_tasks(execute: Execute, db: str, request_id: str, limit: int) -> list[dict]:
    """The task rows of one request: done first, then eligible, then the rest."""
    sql = f"""
        SELECT {', '.join(AUDIT_TASK_COLUMNS)} FROM {db}.audit FINAL
        WHERE request_id = %(request_id)s AND uuid != ''
        ORDER BY outcome IN ('ok', 'no-reply') DESC, eligible DESC, cluster, uuid
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"request_id": request_id, "limit": limit}))


def audit_of_task(execute: Execute, db: str, cluster: str, uuid: str, limit: int) -> list[dict]:
    """Every control request that selected this task, or whose retry sent it, newest first."""
    sql = f"""
        SELECT {', '.join(AUDIT_TASK_COLUMNS)} FROM {db}.audit FINAL
        WHERE cluster = %(cluster)s AND (uuid = %(uuid)s OR new_uuid = %(uuid)s)
        ORDER BY at DESC
        LIMIT %(limit)s"""
    return _rows(*execute(sql, {"cluster": cluster, "uuid": uuid, "limit": limit}))
