"""The UI's query layer on ClickHouse 18.16 (the server, through the UI's own pool) and 26.x (chdb):
the same answers on the same rows; and the pool's limits hold on the old server."""

from __future__ import annotations

import dataclasses
import datetime
import math

import pytest

from streams.migrate import migrate
from streams.clickhouse import ClickHouseWriter, connect
from streams.ui import queries
from streams.ui.db import Pool, TooManyRows
from tests.sqlkit import Chdb, insert_sql
from streams.search import Term as search_term, parse
from tests.ui_data import CLUSTER, HOSTILE, HOSTILE_UUID, OTHER, T0, VERSIONED_UUID, final_tasks, ui_dataset
from tests.unit.test_search import SEARCHES, oracle

DB = "celery_uicheck"


@pytest.fixture(scope="module")
def both(stack, scenario_events, tmp_path_factory):
    settings = stack["settings"].replace(clickhouse_database=DB, ui_row_limit=1000)
    server = connect(settings, with_database=False)
    server.execute(f"DROP DATABASE IF EXISTS {DB}")
    migrate(server.execute, DB)
    writer = ClickHouseWriter(settings, connect(settings))
    modern = Chdb(str(tmp_path_factory.mktemp("chdb-ui")))
    migrate(modern.execute, DB)
    tables, _ = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        writer.insert(table, columns, rows)
        writer.insert(table, columns, rows)  # twice: duplicates change no answer
        modern.execute(insert_sql(DB, table, columns, rows))
    pool = Pool(settings)
    yield pool, modern.query, settings
    pool.close()
    modern.close()
    server.execute(f"DROP DATABASE IF EXISTS {DB}")


def same(a, b) -> bool:
    if isinstance(a, datetime.datetime) and isinstance(b, str):  # the driver's DateTime vs chdb's JSON text
        return a.strftime("%Y-%m-%d %H:%M:%S") == b
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same(old: list[dict], new: list[dict]) -> None:
    assert len(old) == len(new)
    for a, b in zip(old, new):
        assert a.keys() == b.keys()
        for key in a:
            assert same(a[key], b[key]), (key, a[key], b[key])


FILTERS = [
    queries.TaskFilter(),
    queries.TaskFilter(cluster=OTHER),
    queries.TaskFilter(states=("RECOVERED", "CRITICAL")),
    queries.TaskFilter(states=("STARTED",)),
    queries.TaskFilter(name="feas.flaky"),
    queries.TaskFilter(worker="w9@host"),
    queries.TaskFilter(uuid="2"),
    queries.TaskFilter(since=T0 + 4.5),
    queries.TaskFilter(cluster=CLUSTER, name=HOSTILE),
    queries.TaskFilter(name="SEARCH.FIN"),  # a part of the name, any case
    queries.TaskFilter(name="demo.*.find?r"),  # a glob
    queries.TaskFilter(states=("FAILED",), name="demo.search", search=parse("1234 -kwargs:customer=12345")),
]


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: ",".join(f"{k}" for k, v in dataclasses.asdict(w).items() if v) or "all")
def test_task_list_same_on_both(both, where):
    pool, modern, _ = both
    present = queries.table_columns(pool.execute, DB, "tasks")
    assert present == queries.table_columns(modern, DB, "tasks")
    old = queries.tasks(pool.execute, DB, present, where, 500)
    assert_same(old, queries.tasks(modern, DB, present, where, 500))
    if where.states == ("STARTED",):
        assert VERSIONED_UUID not in {r["uuid"] for r in old}  # only its older version was STARTED
    if where.name == HOSTILE:
        assert [r["uuid"] for r in old] == [HOSTILE_UUID] and old[0]["name_chars"] == len(HOSTILE)
    before = (old[1]["first_seen_at"], old[1]["uuid"]) if len(old) > 2 else None
    if before:
        assert_same(queries.tasks(pool.execute, DB, present, where, 3, before), queries.tasks(modern, DB, present, where, 3, before))


def test_task_pages_same_on_both(both, scenario_ids):
    pool, modern, _ = both
    present = queries.table_columns(pool.execute, DB, "tasks")
    for uuid in (scenario_ids["recovered_retry"][0], HOSTILE_UUID, scenario_ids["chain"][1]):
        old = queries.task(pool.execute, DB, CLUSTER, uuid)
        assert_same(old, queries.task(modern, DB, CLUSTER, uuid))
        assert_same(queries.task(pool.execute, DB, "", uuid), old)
        assert_same(queries.task_events(pool.execute, DB, CLUSTER, uuid, 500), queries.task_events(modern, DB, CLUSTER, uuid, 500))
        root = old[0]["root_id"] or uuid
        assert_same(queries.workflow(pool.execute, DB, present, CLUSTER, root, 500), queries.workflow(modern, DB, present, CLUSTER, root, 500))
    assert queries.task(pool.execute, DB, CLUSTER, HOSTILE_UUID)[0]["args"] == HOSTILE


def test_lists_same_on_both(both):
    pool, modern, _ = both
    present = queries.table_columns(pool.execute, DB, "workers")
    assert_same(queries.workers(pool.execute, DB, present, "", 500), queries.workers(modern, DB, present, "", 500))
    assert queries.clusters(pool.execute, DB, 100) == queries.clusters(modern, DB, 100) == [CLUSTER, OTHER]
    assert queries.task_names(pool.execute, DB, "", 100) == queries.task_names(modern, DB, "", 100)
    assert queries.worker_names(pool.execute, DB, CLUSTER, 100) == queries.worker_names(modern, DB, CLUSTER, 100)


def test_the_pool_cannot_write_and_caps_rows(both):
    pool, _, settings = both
    with pytest.raises(Exception, match="readonly|Cannot execute query in readonly mode"):
        pool.execute(f"INSERT INTO {DB}.tasks (cluster, uuid) SELECT 'x', 'y'", {})
    with pytest.raises(TooManyRows, match="UI_ROW_LIMIT"):  # ClickHouse's own refusal, named for the page
        pool.execute("SELECT number FROM system.numbers LIMIT %(n)s", {"n": settings.ui_row_limit + 5000})
    assert pool.execute("SELECT 1", {})[1] == [(1,)]  # the pool still works after both


@pytest.mark.parametrize("text", SEARCHES)
def test_search_same_on_both_and_as_the_oracle_says(both, scenario_events, text):
    """The search box's SQL (streams/search.py) on 18.16 and on 26.x: the same rows, the ones the
    Python oracle keeps (case folding of non-ASCII text, %, _, backslashes, globs, negation)."""
    pool, modern, _ = both
    present = queries.table_columns(pool.execute, DB, "tasks")
    where = queries.TaskFilter(search=parse(text))
    old = queries.tasks(pool.execute, DB, present, where, 1000)
    assert_same(old, queries.tasks(modern, DB, present, where, 1000))
    expected = final_tasks(ui_dataset(scenario_events)[1])
    assert {(r["cluster"], r["uuid"]) for r in old} == {k for k, r in expected.items() if all(oracle(t, r) for t in where.search)}


def test_report_search_on_the_server(both):
    """`celery-monitor report --search` lists what the UI's search finds, in every format; a bad
    search is a usage error saying why."""
    import json as jsonlib

    from click.testing import CliRunner

    from streams.cli import cli

    _, _, settings = both
    env = {"CLICKHOUSE_HOST": settings.clickhouse_host, "CLICKHOUSE_PORT": str(settings.clickhouse_port), "CLICKHOUSE_DATABASE": DB}
    out = CliRunner().invoke(cli, ["report", "--search", "kwargs:customer=1234", "--format", "json"], env=env)
    assert out.exit_code == 0, out.output
    assert [r["uuid"] for r in jsonlib.loads(out.output)["search"]] == ["search-0001"]
    out = CliRunner().invoke(cli, ["report", "--name", "demo.*", "--search", "ÜNÏCÖDÉ OR_NOT -state:SUCCEEDED"], env=env)
    assert out.exit_code == 0 and "(no rows)" in out.output and "tasks found by: name:demo.* ÜNÏCÖDÉ OR_NOT -state:SUCCEEDED" in out.output
    out = CliRunner().invoke(cli, ["report", "--search", "1234", "--name", "search", "--limit", "1"], env=env)
    assert out.exit_code == 0 and "search-0002" in out.output and "search-0001" not in out.output  # newest first, 1 row
    out = CliRunner().invoke(cli, ["report", "--search", "state:DONE"], env=env)
    assert out.exit_code == 2 and "DONE is not a task state" in out.output


@pytest.mark.parametrize("sort_by", ["", "name", "state", "received", "started"])
def test_api_queries_same_on_both(both, sort_by):
    """The API's sorted pages (limit, offset) and queue lengths: the same on 18.16 and 26.x."""
    pool, modern, _ = both
    for descending in (False, True):
        for where in (queries.TaskFilter(), queries.TaskFilter(exact_name="feas.flaky"), queries.TaskFilter(received_since=T0, search=parse("-state:FAILED"))):
            every = queries.tasks_sorted(pool.execute, DB, where, 1000, 0, sort_by, descending)
            old = queries.tasks_sorted(pool.execute, DB, where, 7, 1, sort_by, descending)
            assert every and [r["uuid"] for r in old] == [r["uuid"] for r in every[1:8]]  # offset and limit
            assert_same(every, queries.tasks_sorted(modern, DB, where, 1000, 0, sort_by, descending))
            if where.exact_name:
                assert {r["name"] for r in every} == {"feas.flaky"}
            if sort_by:
                column = queries.SORT_COLUMNS[sort_by]
                values = [r[column] for r in every if r[column] is not None]
                assert values == sorted(values, reverse=descending)
    assert_same(queries.queue_lengths(pool.execute, DB, "", 100), queries.queue_lengths(modern, DB, "", 100))


def test_failure_fingerprints_and_groups_same_on_both(both):
    """The fingerprint's RE2 rules give Python's answer on 18.16 too; the groups are the same on both."""
    from streams.failures import fingerprint, fingerprint_sql
    from tests.unit.test_failures import MESSAGES

    pool, modern, _ = both
    for message, expected in MESSAGES:
        (row,) = pool.execute(f"SELECT {fingerprint_sql('%(m)s')} AS f", {"m": message})[1]
        assert row[0] == expected == fingerprint(message), message
    for terms in ((), (search_term("name", "group.*"),)):
        for since in (0.0, T0 + 11):
            old = queries.failure_groups(pool.execute, DB, "", terms, since, T0 + 3600, 1000)
            assert old
            assert_same(old, queries.failure_groups(modern, DB, "", terms, since, T0 + 3600, 1000))
    (group,) = [g for g in queries.failure_groups(pool.execute, DB, CLUSTER, (), 0.0, T0 + 3600, 1000) if g["fingerprint"] == "KeyError('user <n>')"]
    assert group["count"] == 3 and group["workers"] == ["w-a", "w-b"] and sum(group["trend"]) == 3
    where = queries.TaskFilter(cluster=CLUSTER, search=parse(queries.failure_group_search(group)))
    assert sorted(r["uuid"] for r in queries.tasks(pool.execute, DB, queries.table_columns(pool.execute, DB, "tasks"), where, 100)) == [
        "group-0000", "group-0001", "group-0002"]  # fmt: skip
