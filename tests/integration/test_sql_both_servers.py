"""The same migrations and queries on ClickHouse 18.16 (the server) and 26.x (chdb): same answers."""

import datetime
import math

import pytest

from streams.migrate import load_migrations, migrate
from streams.report import QUERIES_DIR, run_report
from streams.clickhouse import ClickHouseWriter, connect
from tests.sqlkit import Chdb, dataset, insert_sql

DB = "celery_sqlcheck"
QUERIES = sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def both(stack, scenario_events, tmp_path_factory):
    settings = stack["settings"].replace(clickhouse_database=DB)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {DB}")
    assert migrate(server.execute, DB) == [m.id for m in load_migrations(DB)]
    assert migrate(server.execute, DB) == []
    writer = ClickHouseWriter(settings, connect(settings))
    modern = Chdb(str(tmp_path_factory.mktemp("chdb")))
    migrate(modern.execute, DB)
    tables, _ = dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        writer.insert(table, columns, rows)
        writer.insert(table, columns, rows)  # twice: the duplicates must not change any answer
        modern.execute(insert_sql(DB, table, columns, rows))

    def server_query(sql, params):
        rows, types = server.execute(sql, params, with_column_types=True)
        return [n for n, _ in types], rows

    yield server_query, modern.query
    modern.close()
    server.execute(f"DROP DATABASE IF EXISTS {DB}")


def same(a, b) -> bool:
    if isinstance(a, datetime.datetime) and isinstance(b, str):  # the driver's DateTime vs chdb's JSON text
        return a.strftime("%Y-%m-%d %H:%M:%S") == b
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", QUERIES)
def test_same_answer_on_both(both, name):
    server_query, modern_query = both
    params = {"cluster": "fx", "since": 0}
    (old,) = run_report(server_query, DB, params, (name,))
    (new,) = run_report(modern_query, DB, params, (name,))
    assert old.columns == new.columns
    assert old.rows, f"{name} returned nothing on the known dataset"
    assert len(old.rows) == len(new.rows)
    for a, b in zip(old.rows, new.rows):
        assert same(list(a), list(b)), (name, a, b)


def test_retention_partition_drop_runs_on_clickhouse_18(stack):
    import datetime as dt

    from streams.retention import drop_expired

    db = "celery_retention"
    settings = stack["settings"].replace(clickhouse_database=db)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {db}")
    migrate(server.execute, db)
    server.execute(
        f"INSERT INTO {db}.events (cluster, type, uuid, event_date, event_time, timestamp) VALUES",
        [("c", "task-sent", "old", dt.date(2026, 1, 15), dt.datetime(2026, 1, 15, 10), 1768471200.0),
         ("c", "task-sent", "new", dt.date(2026, 11, 20), dt.datetime(2026, 11, 20, 10), 1795168800.0)],
    )  # fmt: skip
    server.execute(
        f"INSERT INTO {db}.queue_lengths (cluster, queue, sampled_at, sampled_time, sampled_date) VALUES",
        [("c", "old", 1768471200.0, dt.datetime(2026, 1, 15, 10), dt.date(2026, 1, 15)),
         ("c", "new", 1795168800.0, dt.datetime(2026, 11, 20, 10), dt.date(2026, 11, 20))],
    )  # fmt: skip
    dropped = drop_expired(server.execute, db, keep_months=3, today=dt.date(2026, 11, 24))
    assert dropped == [f"ALTER TABLE {db}.{table} DROP PARTITION 202601" for table in ("events", "events_per_minute", "queue_lengths")]
    assert [r[0] for r in server.execute(f"SELECT uuid FROM {db}.events")] == ["new"]
    assert [r[0] for r in server.execute(f"SELECT queue FROM {db}.queue_lengths")] == ["new"]
    server.execute(f"DROP DATABASE {db}")


def test_cluster_layout_gives_the_same_answers_on_clickhouse_18(stack, scenario_events, both):
    """The multi-node schema (shards <table>_local behind Distributed tables of the original names)
    on a one-shard cluster of the test server (devstack's celery_monitor_local; replication and
    ON CLUSTER need ZooKeeper, so they are left out here): the sink's inserts and every query work
    through the Distributed tables and give the single-server answers."""
    from streams.migrate import ClusterLayout

    db = "celery_sharded"
    settings = stack["settings"].replace(clickhouse_database=db)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {db}")
    layout = ClusterLayout("celery_monitor_local", replicated=False, on_cluster=False)
    migrate(server.execute, db, layout=layout)
    client = connect(settings)
    client.settings["insert_distributed_sync"] = 1  # the rows are on the shard when INSERT returns
    writer = ClickHouseWriter(settings, client)
    tables, _ = dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        writer.insert(table, columns, rows)
        writer.insert(table, columns, rows)
    assert server.execute(f"SELECT count() FROM {db}.tasks_local")[0][0] == 2 * len(tables["tasks"][1])

    def sharded_query(sql, params):
        rows, types = server.execute(sql.replace(f"{DB}.", f"{db}."), params, with_column_types=True)
        return [n for n, _ in types], rows

    single_query, _ = both
    params = {"cluster": "fx", "since": 0}
    for name in QUERIES:
        (single,) = run_report(single_query, DB, params, (name,))
        (sharded,) = run_report(sharded_query, DB, params, (name,))
        assert sharded.rows == single.rows, name
    server.execute(f"DROP DATABASE IF EXISTS {db}")


def _waiting_dataset(scenario_events, scenario_ids):
    """Tasks cut from the captured retry scenario at each point of its life (arrival order), one
    uuid each, and which of them wait for their next attempt by the rules (docs/state-rules.md):
    RETRY, or RECEIVED with retries > 0 and the current attempt not started."""
    from streams.engine import Tracker
    from streams.sink.rows import task_row

    retry_uuid = scenario_ids["recovered_retry"][0]  # sent0 received0 started0 received1 sent1 retried0 started1 ...
    life = [e for e in scenario_events if e.get("uuid") == retry_uuid]
    assert [e["type"] for e in life[:6]] == ["task-sent", "task-received", "task-started", "task-received", "task-sent", "task-retried"]
    cuts = {
        "received-first-attempt": life[:2],
        "retry-received-while-attempt-0-runs": life[:4],
        "received-retry-waiting-countdown": life[:6],
        "retried-next-not-received": [*life[:3], life[5]],
        "retry-running": life[:7],
        "recovered": life,
    }
    tracker = Tracker()
    for label, events in cuts.items():
        for event in events:
            tracker.feed({**event, "uuid": label}, "waiting")
    records = {r["uuid"]: r for r in tracker.task_records()}
    waiting = {
        label: r["state"] == "RETRY" or (r["state"] == "RECEIVED" and r["retries"] > 0 and r["started_at"] is None)
        for label, r in records.items()
    }
    states = {label: r["state"] for label, r in records.items()}
    # Every case the definition separates is in the data: RETRY, RECEIVED waiting, and neither.
    assert states["retried-next-not-received"] == "RETRY" and waiting["received-retry-waiting-countdown"]
    assert states["received-first-attempt"] == "RECEIVED" and not waiting["received-first-attempt"]
    assert states["retry-running"] == "STARTED" and not waiting["retry-running"]
    retried = sum(1 for r in records.values() if r["retries"] > 0 or r["state"] == "RETRY")
    with_exception = sum(1 for label, r in records.items() if waiting[label] and r["exception_type"] == "ConnectionError")
    return [task_row(r) for r in records.values()], waiting, retried, with_exception


def test_waiting_to_retry_follows_the_rules_on_both_servers(stack, scenario_events, scenario_ids, both):
    """still_retrying (top_exceptions) and waiting_to_retry (retries_and_recovery) count RETRY and
    RECEIVED with retries > 0 (not yet started), on ClickHouse 18.16 and on chdb alike."""
    from streams.sink.rows import TASK_COLUMNS

    db = "celery_waiting"
    rows, expected, retried, waiting_with_exception = _waiting_dataset(scenario_events, scenario_ids)
    settings = stack["settings"].replace(clickhouse_database=db)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {db}")
    migrate(server.execute, db)
    ClickHouseWriter(settings, connect(settings)).insert("tasks", TASK_COLUMNS, rows)
    _, modern_query = both  # chdb allows one session per process: the module's

    def modern_execute(sql, params=None):
        return modern_query(sql, params)[1]

    migrate(modern_execute, db)
    modern_execute(insert_sql(db, "tasks", TASK_COLUMNS, rows))

    def server_query(sql, params):
        result, types = server.execute(sql, params, with_column_types=True)
        return [n for n, _ in types], result

    waiting = sum(expected.values())
    try:
        for query in (server_query, modern_query):
            top, retries = run_report(query, db, {"cluster": "waiting", "since": 0}, ("top_exceptions", "retries_and_recovery"))
            by_type = {row[0]: dict(zip(top.columns, row)) for row in top.rows}
            # (a retry received before its task-retried has no exception yet: not in top_exceptions)
            assert by_type["ConnectionError"]["still_retrying"] == waiting_with_exception >= 2, top.rows
            (row,) = [dict(zip(retries.columns, r)) for r in retries.rows]
            assert row["waiting_to_retry"] == waiting and row["retried"] == retried, row
    finally:
        modern_execute(f"DROP DATABASE IF EXISTS {db}")
        server.execute(f"DROP DATABASE IF EXISTS {db}")
