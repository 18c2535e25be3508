"""The same migrations and queries on ClickHouse 18.16 (the server) and 26.x (chdb): same answers."""

import datetime
import math

import pytest

from streams.migrate import load_migrations, migrate
from streams.report import QUERIES_DIR, run_report
from streams.sink.clickhouse import ClickHouseWriter, connect
from tests.sqlkit import Chdb, dataset, insert_sql

DB = "celery_sqlcheck"
QUERIES = sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


@pytest.fixture(scope="module")
def both(stack, scenario_events, tmp_path_factory):
    import dataclasses

    settings = dataclasses.replace(stack["settings"], clickhouse_database=DB)
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
    import dataclasses
    import datetime as dt

    from streams.retention import drop_expired

    db = "celery_retention"
    settings = dataclasses.replace(stack["settings"], clickhouse_database=db)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {db}")
    migrate(server.execute, db)
    server.execute(
        f"INSERT INTO {db}.events (cluster, type, uuid, event_date, event_time, timestamp) VALUES",
        [("c", "task-sent", "old", dt.date(2026, 1, 15), dt.datetime(2026, 1, 15, 10), 1768471200.0),
         ("c", "task-sent", "new", dt.date(2026, 11, 20), dt.datetime(2026, 11, 20, 10), 1795168800.0)],
    )  # fmt: skip
    dropped = drop_expired(server.execute, db, keep_months=3, today=dt.date(2026, 11, 24))
    assert dropped == [f"ALTER TABLE {db}.events DROP PARTITION 202601", f"ALTER TABLE {db}.events_per_minute DROP PARTITION 202601"]
    assert [r[0] for r in server.execute(f"SELECT uuid FROM {db}.events")] == ["new"]
    server.execute(f"DROP DATABASE {db}")


def test_cluster_layout_gives_the_same_answers_on_clickhouse_18(stack, scenario_events, both):
    """The multi-node schema (shards <table>_local behind Distributed tables of the original names)
    on a one-shard cluster of the test server (devstack's celery_monitor_local; replication and
    ON CLUSTER need ZooKeeper, so they are left out here): the sink's inserts and every query work
    through the Distributed tables and give the single-server answers."""
    import dataclasses

    from streams.migrate import ClusterLayout

    db = "celery_sharded"
    settings = dataclasses.replace(stack["settings"], clickhouse_database=db)
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
