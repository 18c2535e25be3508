"""Migrations and every analytics query on modern ClickHouse (chdb 26.x, in-process)."""

from collections import Counter

import pytest

from streams.migrate import load_migrations, migrate
from streams.report import QUERIES_DIR, render, run_report
from tests.sqlkit import Chdb, dataset, insert_sql

DB = "celery"


@pytest.fixture(scope="module")
def chdb_loaded(tmp_path_factory, scenario_events):
    ch = Chdb(str(tmp_path_factory.mktemp("chdb")))
    applied = migrate(ch.execute, DB)
    assert applied == [m.id for m in load_migrations(DB)]
    tables, records = dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql(DB, table, columns, rows))
    yield ch, records
    ch.close()


def test_migrations_are_idempotent(chdb_loaded):
    ch, _ = chdb_loaded
    assert migrate(ch.execute, DB) == []
    assert [r[0] for r in ch.execute(f"SELECT id FROM {DB}.schema_migrations ORDER BY id")] == [m.id for m in load_migrations(DB)]


def test_every_migration_has_a_down(tmp_path):
    for m in load_migrations(DB):
        assert m.up and m.down, m.id


@pytest.mark.parametrize("name", sorted(p.stem for p in QUERIES_DIR.glob("*.sql")))
def test_every_query_runs(chdb_loaded, name):
    ch, _ = chdb_loaded
    answers = run_report(ch.query, DB, {"cluster": "fx", "since": 0}, (name,))
    assert answers[0].columns


def test_tasks_by_state_matches_the_engine(chdb_loaded):
    ch, records = chdb_loaded
    (answer,) = run_report(ch.query, DB, {"cluster": "fx", "since": 0}, ("tasks_by_state",))
    assert dict(answer.rows) == dict(Counter(r["state"] for r in records))
    (other,) = run_report(ch.query, DB, {"cluster": "nope", "since": 0}, ("tasks_by_state",))
    assert other.rows == []


def test_duplicate_rows_collapse_with_final(chdb_loaded, scenario_events):
    ch, records = chdb_loaded
    tables, _ = dataset(scenario_events)
    columns, rows = tables["tasks"]
    ch.execute(insert_sql(DB, "tasks", columns, rows))  # a replay after a crash
    assert ch.execute(f"SELECT count() FROM {DB}.tasks FINAL")[0][0] == len(records)


def test_render_formats(chdb_loaded):
    ch, _ = chdb_loaded
    answers = run_report(ch.query, DB, {"cluster": "fx", "since": 0})
    assert "Tasks by state" in render(answers)
    assert render(answers, "json").startswith("{")
    assert "# tasks_by_state" in render(answers, "csv")


def test_every_query_is_in_the_report():
    from streams.report import DEFAULT_QUERIES

    assert sorted(DEFAULT_QUERIES) == sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


def test_tag_questions_match_the_engine(chdb_loaded):
    """Retries/recovery, CRITICAL, revocations, rejections: the SQL counts what the engine says."""
    ch, records = chdb_loaded
    tasks = [r for r in records if r["kind"] == "task" and r["cluster"] == "fx"]
    params = {"cluster": "fx", "since": 0}
    retried, critical, revoked, rejected = run_report(
        ch.query, DB, params, ("retries_and_recovery", "critical_tasks", "revocation_reasons", "rejections")
    )
    assert sum(row[1] for row in retried.rows) == sum(1 for t in tasks if t["retries"] > 0)
    assert sum(row[2] for row in retried.rows) == sum(1 for t in tasks if t["state"] == "RECOVERED")
    assert sum(row[2] for row in critical.rows) == sum(1 for t in tasks if t["state"] == "CRITICAL")
    by_reason = Counter((t["revocation_reason"] or "") for t in tasks if t["state"] == "REVOKED")
    sql_by_reason = Counter()
    for row in revoked.rows:
        sql_by_reason[row[1]] += row[3]
    assert sql_by_reason == by_reason
    assert sum(row[1] + row[2] for row in rejected.rows) == sum(1 for t in tasks if t["rejection"])


def test_throughput_view_counts_each_event_once_however_often_inserted(chdb_loaded, scenario_events):
    ch, _ = chdb_loaded  # one chdb session per process: a database of its own in the same one
    db = "celery_reinserted"
    migrate(ch.execute, db)
    tables, _ = dataset(scenario_events)
    columns, rows = tables["events"]
    for _ in range(3):  # at-least-once: the sink may insert the same events again
        ch.execute(insert_sql(db, "events", columns, rows))
    (answer,) = run_report(ch.query, db, {"cluster": "fx", "since": 0}, ("throughput_per_minute",))
    distinct = ch.execute(
        f"SELECT count() FROM (SELECT DISTINCT cluster, uuid, type, hostname, pid, clock, timestamp FROM {db}.events)"
    )[0][0]
    assert sum(row[2] for row in answer.rows) == distinct > 0
    ch.execute(f"DROP DATABASE {db}")


def test_plots_are_valid_pngs(chdb_loaded, tmp_path):
    from streams.plots import CHARTS, write_plots

    ch, _ = chdb_loaded
    answers = run_report(ch.query, DB, {"cluster": "fx", "since": 0}, tuple(CHARTS))
    paths = write_plots(answers, tmp_path / "plots")
    assert sorted(p.name for p in paths) == sorted(name for _, name in CHARTS.values())
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_retention_drops_only_months_older_than_kept(chdb_loaded):
    import datetime as dt

    from streams.retention import cutoff_month, drop_expired

    assert cutoff_month(dt.date(2026, 11, 24), 1) == 202611
    assert cutoff_month(dt.date(2026, 1, 5), 3) == 202511
    ch, _ = chdb_loaded
    db = "celery_retention"
    migrate(ch.execute, db)
    ch.execute(
        f"INSERT INTO {db}.events (cluster, type, uuid, event_date, event_time, timestamp) VALUES "
        "('c', 'task-sent', 'old', '2026-01-15', '2026-01-15 10:00:00', 1768471200), "
        "('c', 'task-sent', 'new', '2026-11-20', '2026-11-20 10:00:00', 1795168800)"
    )
    statements = drop_expired(ch.execute, db, keep_months=3, today=dt.date(2026, 11, 24))
    assert statements == [f"ALTER TABLE {db}.events DROP PARTITION 202601", f"ALTER TABLE {db}.events_per_minute DROP PARTITION 202601"]
    assert [r[0] for r in ch.execute(f"SELECT uuid FROM {db}.events")] == ["new"]
    ch.execute(f"DROP DATABASE {db}")


def test_name_filter_keeps_only_that_task_name(chdb_loaded):
    ch, records = chdb_loaded
    tasks = [r for r in records if r["kind"] == "task" and r["cluster"] == "fx"]
    name = Counter(r["name"] for r in tasks if r["name"]).most_common(1)[0][0]
    params = {"cluster": "fx", "since": 0, "name": name}
    (by_state,) = run_report(ch.query, DB, params, ("tasks_by_state",))
    assert dict(by_state.rows) == dict(Counter(r["state"] for r in tasks if r["name"] == name))
    (failures,) = run_report(ch.query, DB, params, ("failure_rate_by_name",))
    assert [row[0] for row in failures.rows] == [name]


def test_finished_per_minute_counts_each_finished_task_once(chdb_loaded):
    ch, records = chdb_loaded
    tasks = [r for r in records if r["kind"] == "task" and r["cluster"] == "fx"]
    finished = ("SUCCEEDED", "RECOVERED", "FAILED", "CRITICAL", "REVOKED", "REJECTED")
    (answer,) = run_report(ch.query, DB, {"cluster": "fx", "since": 0}, ("finished_per_minute_by_name",))
    got = Counter()
    for _minute, name, state, count in answer.rows:
        got[(name, state)] += count
    assert got == Counter((r["name"], r["state"]) for r in tasks if r["state"] in finished)


def test_cluster_layout_sql_parses_on_modern_clickhouse(chdb_loaded):
    """The Replicated + Distributed ON CLUSTER schema cannot run without a cluster here; modern
    ClickHouse's own parser checks every statement of it."""
    from streams.migrate import ClusterLayout, statements_for

    ch, _ = chdb_loaded
    layout = ClusterLayout("prod")
    statements = [st for m in load_migrations(DB) for down in (False, True) for st in statements_for(m, layout, down)]
    assert len(statements) > 2 * len(load_migrations(DB))
    for statement in statements:
        (formatted,) = ch.execute("SELECT formatQuery(%(q)s)", {"q": statement})[0]
        assert "ON CLUSTER prod" in formatted, statement


def test_cluster_layout_shape():
    from streams.migrate import ClusterLayout, statements_for

    created = [st for m in load_migrations(DB) for st in statements_for(m, ClusterLayout("prod"))]
    heads = [st.split("\n")[0] for st in created]
    assert heads[:2] == [
        f"CREATE TABLE IF NOT EXISTS {DB}.events_local ON CLUSTER prod",
        f"CREATE TABLE IF NOT EXISTS {DB}.events ON CLUSTER prod AS {DB}.events_local",
    ]
    tasks_local = next(st for st in created if st.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.tasks_local"))
    assert f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{DB}/tasks_local', '{{replica}}', version)" in tasks_local
    assert any(f"Distributed(prod, {DB}, tasks_local, cityHash64(cluster, uuid))" in st for st in created)
    view = next(st for st in created if "MATERIALIZED VIEW" in st)
    assert f"TO {DB}.events_per_minute_local" in view and f"FROM {DB}.events_local" in view
    plain = [st for m in load_migrations(DB) for st in statements_for(m, ClusterLayout("c", replicated=False, on_cluster=False))]
    assert not any("ON CLUSTER" in st or "Replicated" in st for st in plain)
    assert ClusterLayout("c").rewrite(f"ALTER TABLE {DB}.tasks ADD COLUMN x String") == [
        f"ALTER TABLE {DB}.tasks_local ON CLUSTER c ADD COLUMN x String",  # the shards
        f"ALTER TABLE {DB}.tasks ON CLUSTER c ADD COLUMN x String",  # the Distributed table over them
    ]
    with pytest.raises(ValueError, match="cannot rewrite"):
        ClusterLayout("c").rewrite(f"RENAME TABLE {DB}.tasks TO {DB}.jobs")
