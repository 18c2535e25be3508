"""The UI's query layer on modern ClickHouse (chdb 26.x, in-process), and its pages through
Starlette's TestClient on the same data (no network). tests/integration/test_ui_queries_both_servers.py
runs the same queries on the 18.16 server and compares."""

from __future__ import annotations

from collections import Counter

import pytest

from streams.config import Settings
from streams.migrate import migrate
from streams.ui import queries
from tests.sqlkit import Chdb, insert_sql
from tests.ui_data import CLUSTER, HOSTILE, HOSTILE_UUID, OTHER, T0, VERSIONED_UUID, final_tasks, ui_dataset

DB = "celery"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, scenario_events):
    ch = Chdb(str(tmp_path_factory.mktemp("chdb-ui")))
    migrate(ch.execute, DB)
    tables, records = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql(DB, table, columns, rows))
    yield ch, final_tasks(records)
    ch.close()


def every_page(execute, where, present, size):
    """All rows of a filter, page by page (keyset), as the UI's 'older' link walks them."""
    seen, before = [], None
    while True:
        page = queries.tasks(execute, DB, present, where, size, before)
        seen += page
        if len(page) < size:
            return seen
        before = (page[-1]["first_seen_at"], page[-1]["uuid"])


def test_the_list_is_every_task_newest_first_and_pages_cover_it_once(loaded):
    ch, expected = loaded
    present = queries.table_columns(ch.query, DB, "tasks")
    rows = every_page(ch.query, queries.TaskFilter(), present, 7)
    assert sorted((r["cluster"], r["uuid"]) for r in rows) == sorted(expected)
    keys = [(r["first_seen_at"], r["uuid"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    for r in rows:  # the latest version of every task, badge fields included
        want = expected[(r["cluster"], r["uuid"])]
        assert (r["state"], r["retries"], r["revocation_reason"], r["rejection"]) == (
            want["state"], want["retries"], want["revocation_reason"], want["rejection"])  # fmt: skip


@pytest.mark.parametrize(
    "where, keep",
    [
        (queries.TaskFilter(cluster=OTHER), lambda r: r["cluster"] == OTHER),
        (queries.TaskFilter(states=("RECOVERED", "CRITICAL")), lambda r: r["state"] in ("RECOVERED", "CRITICAL")),
        (queries.TaskFilter(states=("STARTED",)), lambda r: r["state"] == "STARTED"),  # the stale STARTED version never matches
        (queries.TaskFilter(name="feas.flaky"), lambda r: r["name"] == "feas.flaky"),
        (queries.TaskFilter(worker="w9@host"), lambda r: r["worker"] == "w9@host"),
        (queries.TaskFilter(uuid="2"), lambda r: r["uuid"].startswith("2")),
        (queries.TaskFilter(since=T0 + 4.5), lambda r: r["first_seen_at"] >= T0 + 4.5),
        (queries.TaskFilter(since=T0, until=T0 + 3), lambda r: T0 <= r["first_seen_at"] < T0 + 3),
        (queries.TaskFilter(cluster=CLUSTER, states=("FAILED",), name=HOSTILE), lambda r: r["uuid"] == HOSTILE_UUID),
    ],
)
def test_each_filter_keeps_exactly_its_tasks(loaded, where, keep):
    ch, expected = loaded
    present = queries.table_columns(ch.query, DB, "tasks")
    got = {(r["cluster"], r["uuid"]) for r in every_page(ch.query, where, present, 50)}
    want = {key for key, r in expected.items() if keep(r)}
    assert got == want and (want or where.states == ("STARTED",))


def test_list_cuts_long_text_and_says_how_long_it_was(loaded):
    ch, _ = loaded
    present = queries.table_columns(ch.query, DB, "tasks")
    (row,) = queries.tasks(ch.query, DB, present, queries.TaskFilter(uuid=HOSTILE_UUID), 5)
    assert row["name"] == HOSTILE[: queries.TRUNCATE_CHARS] and row["name_chars"] == len(HOSTILE)
    (full,) = queries.task(ch.query, DB, CLUSTER, HOSTILE_UUID)
    assert full["name"] == HOSTILE and full["args"] == HOSTILE


def test_columns_the_engine_adds_are_selected_and_badged_once_they_exist(loaded):
    from streams.ui.badges import task_badge, worker_badge

    ch, _ = loaded
    present = queries.table_columns(ch.query, DB, "tasks")
    assert {"orphaned_at", "cancels", "seen_at"} <= set(present)  # migration 0006
    (row,) = queries.tasks(ch.query, DB, present, queries.TaskFilter(uuid=VERSIONED_UUID), 5)
    assert row["orphaned_at"] is None and row["state"] == "SUCCEEDED"

    db = "celery_future"
    migrate(ch.execute, db)
    ch.execute(f"INSERT INTO {db}.tasks (cluster, uuid, name, state, first_seen_at, last_seen_at, events_count, version, orphaned_at, cancels) "
               f"VALUES ('c', 'u1', 'n', 'STARTED', 1, 2, 3, 3, 1795487000, 1)")  # fmt: skip
    ch.execute(f"INSERT INTO {db}.workers (cluster, hostname, state, updated_at, version, skew) VALUES ('c', 'h', 'HEARTBEAT', 1, 1, -20)")
    (row,) = queries.tasks(ch.query, db, queries.table_columns(ch.query, db, "tasks"), queries.TaskFilter(), 5)
    assert task_badge(row).label == "STARTED orphaned cancelled ×1"
    (worker,) = queries.workers(ch.query, db, queries.table_columns(ch.query, db, "workers"), "", 5)
    assert worker_badge(worker).label == "HEARTBEAT clock -20.0 s"
    ch.execute(f"DROP DATABASE {db}")


def test_task_events_and_workflow(loaded, scenario_ids):
    ch, expected = loaded
    present = queries.table_columns(ch.query, DB, "tasks")
    uuid = scenario_ids["recovered_retry"][0]
    events = queries.task_events(ch.query, DB, CLUSTER, uuid, 100)
    assert len(events) == expected[(CLUSTER, uuid)]["events_count"]
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len(queries.task_events(ch.query, DB, CLUSTER, uuid, 3)) == 3  # the row limit
    chain = scenario_ids["chain"]
    nodes = queries.workflow(ch.query, DB, present, CLUSTER, chain[0], 100)
    assert {n["uuid"] for n in nodes} == set(chain)
    assert queries.task(ch.query, DB, "", chain[1])[0]["root_id"] == chain[0]


def test_workers_clusters_and_suggestions(loaded):
    ch, expected = loaded
    present = queries.table_columns(ch.query, DB, "workers")
    workers = queries.workers(ch.query, DB, present, "", 100)
    assert [(w["cluster"], w["state"]) for w in workers] == [(CLUSTER, "OFFLINE"), (OTHER, "HEARTBEAT")]
    assert queries.workers(ch.query, DB, present, OTHER, 100)[0]["hostname"].startswith("<script>")
    assert queries.clusters(ch.query, DB, 100) == [CLUSTER, OTHER]
    names = queries.task_names(ch.query, DB, CLUSTER, 1000)
    assert "feas.flaky" in names and HOSTILE not in names  # a 50 kB name is no suggestion
    assert queries.worker_names(ch.query, DB, CLUSTER, 100) == ["w1@vm"]


# -- pages, through Starlette's TestClient on the same chdb data ----------------------------------
@pytest.fixture(scope="module")
def client(loaded):
    from starlette.testclient import TestClient

    from streams.ui.app import create_app

    ch, _ = loaded
    settings = Settings.load(environ={}, ui_row_limit=500, ui_page_size=50)
    return TestClient(create_app(settings, execute=ch.query))


def test_every_page_renders(client, scenario_ids):
    from streams.ui.charts import CHARTS

    panels = [f"/analytics/panel?cluster={CLUSTER}&chart={chart_id}" for chart_id, _, _ in CHARTS.values()]
    for path in ("/tasks", "/tasks/rows", "/failures", "/failures?window=3600&name=feas.*", "/workers", "/workers/rows", "/analytics", *panels,
                 f"/task?cluster={CLUSTER}&uuid={scenario_ids['recovered_retry'][0]}", f"/task/live?uuid={scenario_ids['chain'][1]}"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["server-timing"].startswith("app;dur=")
    assert client.get("/task?uuid=nope").status_code == 404
    assert client.get("/analytics/panel?chart=nope").status_code == 400


def test_hostile_text_is_escaped_on_every_page(client):
    pages = [client.get("/tasks").text, client.get("/failures").text, client.get(f"/task?cluster={CLUSTER}&uuid={HOSTILE_UUID}").text,
             client.get(f"/workers?cluster={OTHER}").text, client.get(f"/analytics?cluster={CLUSTER}").text,
             client.get(f"/analytics/panel?cluster={CLUSTER}&chart=failures").text,
             client.get(f"/analytics/panel?cluster={CLUSTER}&chart=exceptions").text]  # fmt: skip
    for text in pages:
        assert "<script>window.__xss" not in text and "<img src=x" not in text and "<b>Boom</b>" not in text
    task_page = pages[2]
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in task_page
    assert task_page.count("x" * 50_000) >= 2  # name and args shown whole on the task page
    assert "<bdi class=\"u\">" in task_page  # right-to-left marks isolated


def test_state_filter_on_the_page(client):
    import re

    text = client.get("/tasks?state=CRITICAL&state=RECOVERED").text
    states = re.findall(r'<tr data-uuid="[^"]*" data-state="(\w+)"', text)
    assert sorted(states) == ["CRITICAL"] * 3 + ["RECOVERED"] * 2
    assert client.get("/tasks?window=abc").status_code == 400
    assert client.get("/tasks?state=NOT_A_STATE").status_code == 400  # said, not ignored (it listed every task)
    assert sorted(re.findall(r'data-state="(\w+)"', client.get("/tasks?state=SUCCESS").text)) == sorted(
        re.findall(r'data-state="(\w+)"', client.get("/tasks?state=SUCCEEDED&state=RECOVERED").text))  # Celery's names too


def test_row_limit_caps_the_list(loaded):
    from starlette.testclient import TestClient

    from streams.ui.app import create_app

    ch, _ = loaded
    settings = Settings.load(environ={}, ui_row_limit=5, ui_page_size=50)
    page = TestClient(create_app(settings, execute=ch.query)).get("/tasks").text
    assert page.count("<tr data-uuid=") == 5 and "UI_ROW_LIMIT (5) reached" in page and "older »" in page


def test_a_timed_out_query_is_a_504_page_naming_the_setting(loaded):
    from starlette.testclient import TestClient

    from streams.ui.app import create_app
    from streams.ui.db import QueryTimeout

    def slow(sql, params):
        raise QueryTimeout("ClickHouse did not answer within 5 s (UI_QUERY_TIMEOUT); narrow the filters or raise the setting")

    response = TestClient(create_app(Settings.load(environ={}), execute=slow)).get("/tasks")
    assert response.status_code == 504 and "UI_QUERY_TIMEOUT" in response.text


def test_auth_when_configured():
    from starlette.testclient import TestClient

    from streams.ui.app import create_app

    def nothing(sql, params):
        return [], []

    settings = Settings.load(environ={}).replace(ui_basic_auth="admin:s3cret", ui_token="tok-123")
    client = TestClient(create_app(settings, execute=nothing))
    assert client.get("/workers").status_code == 401
    assert client.get("/workers").headers["www-authenticate"].startswith("Basic")
    assert client.get("/workers", auth=("admin", "s3cret")).status_code == 200
    assert client.get("/workers", auth=("admin", "wrong")).status_code == 401
    assert client.get("/workers", headers={"Authorization": "Bearer tok-123"}).status_code == 200
    assert client.get("/workers", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/healthz").status_code == 200  # a probe carries no credentials; it learns only "ok"
    assert client.get("/vendor/htmx.min.js").status_code == 401  # assets too


def test_no_route_writes():
    from streams.ui.app import create_app

    app = create_app(Settings.load(environ={}), execute=lambda sql, params: ([], [])).app
    # Task control's two routes only forward to celery-monitor control (its own process); the UI writes nothing.
    forwards = {"/control", "/api/v1/control"}
    methods = Counter(m for route in app.routes if route.path not in forwards for m in (getattr(route, "methods", None) or ()))
    assert set(methods) <= {"GET", "HEAD"}


def test_a_chart_past_the_row_cap_shows_the_newest_minutes_not_an_error(loaded):
    """Past UI_ROW_LIMIT + a margin ClickHouse refuses the whole answer: every chart's query is
    capped, a time series keeps its newest minutes (oldest first, as a chart reads them)."""
    from starlette.testclient import TestClient

    from streams.report import load_query
    from streams.ui.app import create_app

    ch, _ = loaded
    _, every = ch.query(load_query("throughput_per_minute", DB).sql, {"cluster": "", "name": "", "since": 0})
    assert len(every) > 3
    tiny = TestClient(create_app(Settings.load(environ={}, ui_row_limit=3, ui_page_size=3), execute=ch.query))
    response = tiny.get("/analytics/panel?chart=events")
    assert response.status_code == 200 and "(newest 3: UI_ROW_LIMIT)" in response.text, response.text[:500]
    minutes = sorted({str(r[0]) for r in every})
    assert len(minutes) > 1 and minutes[-1] in response.text and minutes[0] not in response.text
    assert tiny.get("/analytics/panel?chart=exceptions").status_code == 200
