"""Rows for the UI's query-layer tests: the real captures plus hand-made records for what the
captures do not hold (an older version of a task still unmerged, hostile text, tags of states
that are not final, a second cluster). Shared by the chdb (modern) and 18.16 tests."""

from __future__ import annotations

from streams.sink.rows import TASK_COLUMNS, WORKER_COLUMNS, task_row, worker_row
from tests.sqlkit import dataset

CLUSTER = "fx"
OTHER = "other-cluster"
# <script>, quotes, an img onerror, right-to-left override + pop, then 50 kB.
HOSTILE = '<script>window.__xss=1</script>"\'&amp;<img src=x onerror="window.__xss=2">\u202eevil\u202c\u200f' + "x" * 50_000
HOSTILE_UUID = "hostile-0001"
VERSIONED_UUID = "versioned-0001"
SEARCH_UUIDS = ("search-0001", "search-0002")
T0 = 1795487000.0  # before the captures (2026-11-24)


def task(uuid: str, state: str, events_count: int = 1, cluster: str = CLUSTER, **fields) -> dict:
    record = {c: None for c in TASK_COLUMNS}
    record.update(cluster=cluster, uuid=uuid, name="hand.made", state=state, retries=0, requeues=0,
                  first_seen_at=T0, last_seen_at=T0 + 1, events_count=events_count)  # fmt: skip
    record.update(fields)
    return record


HAND_MADE = [
    # An older version (STARTED) and the newer one (SUCCEEDED), both inserted: FINAL keeps the newer.
    task(VERSIONED_UUID, "STARTED", 3, worker="w9@host", started_at=T0 + 0.5),
    task(VERSIONED_UUID, "SUCCEEDED", 5, worker="w9@host", started_at=T0 + 0.5, succeeded_at=T0 + 1, runtime=0.5),
    task(HOSTILE_UUID, "FAILED", 4, name=HOSTILE, args=HOSTILE, kwargs="{'k': '" + HOSTILE[:200] + "'}", exception=HOSTILE,
         exception_type="<b>Boom</b>", traceback=HOSTILE, worker="<i>w</i>@host", first_seen_at=T0 + 2, last_seen_at=T0 + 3),
    task("requeued-0001", "REJECTED", 6, rejection="requeued", requeues=2, first_seen_at=T0 + 4),
    task("retry-0001", "RETRY", 4, retries=1, first_seen_at=T0 + 5),
    task("received-0001", "RECEIVED", 7, retries=2, first_seen_at=T0 + 6),
    task("other-0001", "SUCCEEDED", 4, cluster=OTHER, name="other.task", first_seen_at=T0 + 7),
    # For search: LIKE's and regex's special characters, a backslash, quotes, non-ASCII text.
    task(SEARCH_UUIDS[0], "FAILED", 4, name="demo.search.find", args="(1234, 'Ünïcödé ΩMEGA', '50%_off')",
         kwargs="{'customer': 1234, 'note': 'a\\\\b \"q\"'}", exception_type="ValueError",
         exception="ValueError('bad id 0x7f3a at 10.0.0.1')", worker="celery@search-1",
         traceback='Traceback (most recent call last):\n  File "x.py", line 12, in run\nValueError: bad id 0x7f3a',
         first_seen_at=T0 + 8),
    task(SEARCH_UUIDS[1], "SUCCEEDED", 4, name="demo.search.finder", args="(12345,)", kwargs="{'customer': 12345}",
         result="'ok 100% [done]'", worker="celery@search-2", runtime=0.25, first_seen_at=T0 + 9),
    # For failure groups: one problem three times (numbers differ), a different message, another task.
    *[task(f"group-000{i}", "FAILED", 4, name="group.me", exception_type="KeyError", exception=f"KeyError('user {n}')",
           traceback=f"Traceback (most recent call last):\nKeyError: 'user {n}'", worker=w, first_seen_at=T0 + 10 + i,
           last_seen_at=T0 + 10.5 + i, failed_at=T0 + 10.5 + i)
      for i, (n, w) in enumerate(((1234, "w-a"), (5678, "w-b"), (42, "w-a")))],
    task("group-0003", "FAILED", 4, name="group.me", exception_type="KeyError", exception="KeyError('account 7')",
         worker="w-a", first_seen_at=T0 + 14, last_seen_at=T0 + 14.5, failed_at=T0 + 14.5),
    task("group-0004", "FAILED", 4, name="group.other", exception_type="TimeoutError", exception="TimeoutError('after 30s to 10.1.2.3:6379')",
         worker="w-b", first_seen_at=T0 + 15, last_seen_at=T0 + 15.5, failed_at=T0 + 15.5),
]  # fmt: skip

HAND_MADE_WORKERS = [
    {"cluster": OTHER, "hostname": "<script>window.__xss=3</script>@\u202ehost", "state": "HEARTBEAT", "freq": 2.0,
     "active": 1, "processed": 10, "loadavg": [0.1, 0.2, 0.3], "sw_ident": "py-celery", "sw_ver": "5.7.0",
     "sw_sys": "Linux", "online_at": T0, "heartbeat_at": T0 + 2},
]  # fmt: skip


def ui_dataset(scenario_events) -> tuple[dict, list[dict]]:
    """(table -> (columns, rows)) for every table, and the engine's task records of the captures."""
    tables, records = dataset(scenario_events, CLUSTER)
    columns, rows = tables["tasks"]
    tables["tasks"] = (columns, rows + [task_row(r) for r in HAND_MADE])
    columns, rows = tables["workers"]
    tables["workers"] = (WORKER_COLUMNS, rows + [worker_row(w) for w in HAND_MADE_WORKERS])
    return tables, records


def final_tasks(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(cluster, uuid) -> the record the UI must show: the captures' and the newest hand-made ones."""
    out = {(r["cluster"], r["uuid"]): r for r in records if r["kind"] == "task"}
    for r in HAND_MADE:
        key = (r["cluster"], r["uuid"])
        if key not in out or out[key]["events_count"] <= r["events_count"]:
            out[key] = r
    return out
