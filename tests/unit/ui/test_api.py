"""The HTTP API (streams/ui/api.py) through Starlette's TestClient on chdb (modern ClickHouse), on the
UI tests' data; tests/integration/test_ui_browser.py asks a real server on 18.16 with real tasks."""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.migrate import migrate
from tests.sqlkit import Chdb, insert_sql
from tests.ui_data import CLUSTER, HOSTILE_UUID, OTHER, SEARCH_UUIDS, VERSIONED_UUID, final_tasks, ui_dataset

DB = "celery"
FLOWER_KEYS = {"uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded", "failed", "retried", "revoked",
               "args", "kwargs", "eta", "expires", "retries", "worker", "result", "exception", "timestamp", "runtime",
               "traceback", "exchange", "routing_key", "clock", "client", "root", "root_id", "parent", "parent_id", "children"}  # fmt: skip


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, scenario_events):
    ch = Chdb(str(tmp_path_factory.mktemp("chdb-api")))
    migrate(ch.execute, DB)
    tables, records = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql(DB, table, columns, rows))
    yield ch, final_tasks(records)
    ch.close()


@pytest.fixture(scope="module")
def client(loaded):
    from starlette.testclient import TestClient

    from streams.ui.app import create_app

    ch, _ = loaded
    return TestClient(create_app(Settings.load(environ={}, ui_row_limit=500, ui_page_size=50), execute=ch.query))


def test_tasks_in_flowers_shape(client, loaded):
    _, expected = loaded
    answer = client.get("/api/tasks")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    tasks = answer.json()
    assert set(tasks) == {u for (_, u) in expected}  # uuids unique across the two clusters here
    for uuid, t in tasks.items():
        assert FLOWER_KEYS <= set(t) and t["uuid"] == uuid
        assert t["state"] in {"PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REJECTED", "REVOKED"}
    recovered = next(t for t in tasks.values() if t["monitor_state"] == "RECOVERED")
    assert recovered["state"] == "SUCCESS" and recovered["succeeded"] is not None
    critical = next(t for t in tasks.values() if t["monitor_state"] == "CRITICAL")
    assert critical["state"] == "FAILURE"
    hostile = tasks[HOSTILE_UUID]
    assert hostile["args"].startswith("<script>") and hostile["exception"].startswith("<script>")  # JSON: the text as it is


def test_tasks_filters_sort_and_paging(client, loaded):
    _, expected = loaded
    failed = client.get("/api/tasks?state=FAILURE").json()
    assert {t["monitor_state"] for t in failed.values()} == {"FAILED", "CRITICAL"}
    assert set(client.get("/api/tasks?state=RECOVERED").json()) == {u for (_, u), r in expected.items() if r["state"] == "RECOVERED"}
    names = [t["name"] for t in client.get("/api/tasks?sort_by=name").json().values()]
    assert names == sorted(names)
    names = [t["name"] for t in client.get("/api/tasks?sort_by=-name").json().values()]
    assert names == sorted(names, reverse=True)
    every = list(client.get("/api/tasks?sort_by=received").json())
    pages = [list(client.get(f"/api/tasks?sort_by=received&limit=7&offset={o}").json()) for o in range(0, len(every), 7)]
    assert sum(pages, []) == every
    assert {t["name"] for t in client.get("/api/tasks?taskname=feas.flaky").json().values()} == {"feas.flaky"}
    assert client.get("/api/tasks?taskname=feas.fl").json() == {}  # Flower's taskname is a whole name
    assert {t["worker"] for t in client.get("/api/tasks?workername=w9@host").json().values()} == {"w9@host"}
    assert client.get("/api/tasks?taskname=All&workername=All&state=All").json().keys() == client.get("/api/tasks").json().keys()
    assert list(client.get("/api/tasks?search=kwargs:customer=1234").json()) == [SEARCH_UUIDS[0]]
    assert client.get("/api/tasks?limit=0").json() == {}
    assert set(client.get(f"/api/tasks?cluster={OTHER}").json()) == {"other-0001"}


def test_received_window(client, loaded):
    _, expected = loaded
    import datetime as dt

    times = sorted(r["received_at"] for r in expected.values() if r.get("received_at"))
    middle = dt.datetime.fromtimestamp(times[len(times) // 2], dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    start = dt.datetime.strptime(middle, "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc).timestamp()
    after = client.get(f"/api/tasks?received_start={middle}").json()
    before = client.get(f"/api/tasks?received_end={middle}").json()
    assert set(after) == {u for (_, u), r in expected.items() if r.get("received_at") and r["received_at"] > start}
    assert set(before) == {u for (_, u), r in expected.items() if r.get("received_at") and r["received_at"] < start}


@pytest.mark.parametrize(
    "path, message",
    [
        ("/api/tasks?sort_by=uuid", "sort_by must be one of"),
        ("/api/tasks?limit=x", "'limit' must be an integer"),
        ("/api/tasks?offset=-1", "'offset' must be >= 0"),
        ("/api/tasks?state=DONE", "'DONE' is not a task state"),
        ("/api/tasks?received_start=yesterday", "%Y-%m-%d %H:%M"),
        ('/api/tasks?search="open', "unterminated quote"),
        ("/api/v1/tasks?q=state:DONE", "DONE is not a task state"),
        ("/api/v1/tasks?window=-1", "positive number"),
        ("/api/v1/tasks?state=DONE", "'DONE' is not a task state"),  # was ignored: every task
        ("/api/tasks?offset=18446744073709551616", "'offset' must be <= 10,000,000"),  # was a plain-text 500
    ],
)
def test_bad_requests_are_400_json_saying_why(client, path, message):
    answer = client.get(path)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_native_state_filter_takes_celerys_names_too(client):
    failures = client.get("/api/v1/tasks?state=FAILURE&limit=500").json()["tasks"]
    assert failures and {t["state"] for t in failures} <= {"FAILED", "CRITICAL"}
    assert client.get("/api/v1/tasks?state=failed,critical&limit=500").json()["tasks"] == failures


def test_task_info_types_workers_queues(client, loaded, scenario_ids):
    _, expected = loaded
    uuid = scenario_ids["recovered_retry"][0]
    info = client.get(f"/api/task/info/{uuid}").json()
    assert FLOWER_KEYS <= set(info) and info["uuid"] == uuid and info["state"] == "SUCCESS" and info["retries"] == expected[(CLUSTER, uuid)]["retries"]
    missing = client.get("/api/task/info/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Unknown task 'nope'"}
    assert client.get(f"/api/task/info/{VERSIONED_UUID}").json()["state"] == "SUCCESS"  # the latest version
    types = client.get("/api/task/types").json()["task-types"]
    assert "feas.flaky" in types and types == sorted(types)
    workers = client.get("/api/workers").json()
    assert "w1@vm" in workers and workers["w1@vm"]["alive"] is False and "stats" in workers["w1@vm"]
    assert client.get("/api/workers?status=true").json()["w1@vm"] is False
    assert list(client.get("/api/workers?workername=w1@vm").json()) == ["w1@vm"]
    assert client.get("/api/workers?workername=nobody").status_code == 404
    queues = client.get(f"/api/queues/length?cluster={CLUSTER}").json()["active_queues"]
    assert {q["name"]: q["messages"] for q in queues} == {"celery": 5 * 17, "priority": 100 - 17}  # the newest sample, task queues only


def test_native_endpoints(client, scenario_ids):
    assert client.get("/api/v1/clusters").json() == {"clusters": [CLUSTER, OTHER]}
    page = client.get("/api/v1/tasks?state=RECOVERED&state=CRITICAL&limit=2").json()
    assert len(page["tasks"]) == 2 and page["next_before"]
    assert all(t["badge"]["label"].startswith(t["state"]) for t in page["tasks"])
    rest = client.get("/api/v1/tasks", params={"state": ["RECOVERED", "CRITICAL"], "before": page["next_before"], "limit": 50}).json()
    assert len(page["tasks"]) + len(rest["tasks"]) == 5 and rest["next_before"] is None
    assert [t["uuid"] for t in client.get("/api/v1/tasks?q=" + "kwargs%3Acustomer%3D12345").json()["tasks"]] == [SEARCH_UUIDS[1]]
    uuid = scenario_ids["recovered_retry"][0]
    one = client.get(f"/api/v1/tasks/{uuid}").json()
    assert one["task"]["uuid"] == uuid and one["badge"]["label"] == "RECOVERED after 2 retries"
    assert [a["number"] for a in one["attempts"]] == [0, 1, 2] and [a["outcome"] for a in one["attempts"]] == ["retried", "retried", "succeeded"]
    assert one["events_count"] == sum(len(a["events"]) for a in one["attempts"])
    chain = scenario_ids["chain"]
    assert {n["uuid"] for n in client.get(f"/api/v1/tasks/{chain[1]}").json()["workflow"]} == set(chain)
    assert client.get("/api/v1/tasks/nope").status_code == 404
    workers = client.get("/api/v1/workers").json()["workers"]
    assert [w["badge"]["state"] for w in workers] == ["OFFLINE", "HEARTBEAT"]


def test_openapi_document_is_valid_and_names_every_route(client):
    from openapi_spec_validator import validate

    from streams.ui.app import create_app

    doc = client.get("/api/openapi.json").json()
    validate(doc)
    app = create_app(Settings.load(environ={}), execute=lambda sql, params: ([], [])).app
    routes = {r.path.replace(":path}", "}") for r in app.routes if getattr(r, "path", "").startswith("/api/")}
    assert routes == set(doc["paths"])


def test_api_needs_the_uis_auth_and_never_writes():
    from collections import Counter

    from starlette.testclient import TestClient

    from streams.ui.app import create_app

    settings = Settings.load(environ={}).replace(ui_token="tok-123")
    client = TestClient(create_app(settings, execute=lambda sql, params: ([], [])))
    assert client.get("/api/tasks").status_code == 401 and client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/tasks", headers={"Authorization": "Bearer tok-123"}).json() == {}
    assert client.post("/api/tasks", headers={"Authorization": "Bearer tok-123"}).status_code == 405
    app = create_app(settings, execute=lambda sql, params: ([], [])).app
    # The only POST routes forward to celery-monitor control (task control); off by default, they do nothing.
    posts = {r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())}
    assert posts == {"/control", "/api/v1/control"}
    assert set(Counter(m for r in app.routes if r.path not in posts for m in (getattr(r, "methods", None) or ()))) <= {"GET", "HEAD"}
    auth = {"Authorization": "Bearer tok-123"}
    assert client.post("/api/v1/control", json={"action": "retry", "selection": {"name": "x"}}, headers=auth).status_code == 404
    assert client.post("/control", data={"action": "retry"}, headers={**auth, "HX-Request": "true"}).status_code == 403


def test_control_needs_an_operator_from_this_origin(tmp_path):
    """Viewers are refused by the UI itself, cross-site posts before anything; only an operator sees
    the control form (an operator's request reaching celery-monitor control: tests/integration/test_control.py)."""
    import base64

    from starlette.testclient import TestClient

    from streams.ui.app import create_app
    from streams.ui.auth import hash_password
    from devstack.services import free_port

    users = tmp_path / "users.toml"
    users.write_text(f"""
[users.op]
password = "{hash_password('op-pw', iterations=100_000)}"
role = "operator"
[users.view]
password = "{hash_password('view-pw', iterations=100_000)}"
""")
    settings = Settings.load(environ={}).replace(ui_users_file=str(users), control_url=f"http://127.0.0.1:{free_port()}",
                                                 control_secret="k" * 32, control_timeout=2.0)  # fmt: skip
    client = TestClient(create_app(settings, execute=lambda sql, params: ([], [])))

    def creds(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    body = {"action": "retry", "selection": {"name": "x"}}
    viewer = client.post("/api/v1/control", json=body, headers=creds("view", "view-pw"))
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]
    cross_site = client.post("/api/v1/control", json=body, headers={**creds("op", "op-pw"), "Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    form = client.post("/control", data={"action": "retry", "name": "x"}, headers=creds("op", "op-pw"))  # a plain form: no htmx header
    assert form.status_code == 403
    page = client.get("/tasks?name=x", headers=creds("op", "op-pw")).text
    assert 'hx-post="/control"' in page and "op · operator" in page
    assert 'hx-post="/control"' not in client.get("/tasks?name=x", headers=creds("view", "view-pw")).text


def test_a_timed_out_query_is_a_504_json():
    from starlette.testclient import TestClient

    from streams.ui.app import create_app
    from streams.ui.db import QueryTimeout

    def slow(sql, params):
        raise QueryTimeout("ClickHouse did not answer within 5 s (UI_QUERY_TIMEOUT)")

    answer = TestClient(create_app(Settings.load(environ={}), execute=slow)).get("/api/tasks")
    assert answer.status_code == 504 and "UI_QUERY_TIMEOUT" in answer.json()["error"]


def test_failure_groups_endpoint_and_page(client):
    groups = client.get("/api/v1/failure-groups?window=0&name=group.").json()
    assert not groups["cut"]
    by = {(g["name"], g["fingerprint"]): g for g in groups["groups"]}
    assert by[("group.me", "KeyError('user <n>')")]["count"] == 3 and by[("group.me", "KeyError('account <n>')")]["count"] == 1
    g = by[("group.me", "KeyError('user <n>')")]
    listed = client.get(g["tasks_url"]).text
    assert listed.count('<tr data-uuid="group-000') == 3 and 'data-uuid="group-0003"' not in listed
    assert client.get("/api/v1/failure-groups?name=group.me&limit=1").json()["cut"] is True
    assert client.get("/api/v1/failure-groups?window=x").status_code == 400
    page = client.get("/failures")
    assert page.status_code == 200 and page.text.count('<tr class="group"') >= 4
    assert "&lt;b&gt;Boom&lt;/b&gt;" in page.text and "<b>Boom</b>" not in page.text and "<script>window.__xss" not in page.text
    assert client.get("/failures?name=nothing-fails-here").text.count('<tr class="group"') == 0


def test_failure_groups_window_is_the_failures_time(loaded, client):
    """From a hostile review: a retried task first seen two days ago that failed a minute ago is in
    the last hour's groups (the window was on first_seen_at)."""
    import time

    from streams.sink.rows import TASK_COLUMNS, task_row
    from tests.ui_data import task

    ch, _ = loaded
    now = time.time()
    rows = [task("late-fail-0001", "CRITICAL", 40, name="eta.job", exception_type="KeyError", exception="KeyError('x')",
                 first_seen_at=now - 2 * 86400, last_seen_at=now - 60, failed_at=now - 60, worker="w1"),
            task("old-fail-0001", "FAILED", 4, name="eta.job", exception_type="KeyError", exception="KeyError('x')",
                 first_seen_at=now - 7200, last_seen_at=now - 7100, failed_at=now - 7100, worker="w1")]  # fmt: skip
    ch.execute(insert_sql(DB, "tasks", TASK_COLUMNS, [task_row(r) for r in rows]))
    (group,) = client.get("/api/v1/failure-groups?name=eta.job&window=3600").json()["groups"]
    assert (group["count"], group["latest_uuid"]) == (1, "late-fail-0001")
    (group,) = client.get("/api/v1/failure-groups?name=eta.job").json()["groups"]
    assert group["count"] == 2
