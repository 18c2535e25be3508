"""The web UI in a real browser (Debian's headless chromium through selenium) over a real pipeline.

One pipeline for the module (RabbitMQ -> bridge -> Tansu -> streams worker -> ClickHouse, with a
real Celery worker running the demo workload plus a canvas and hostile tasks) and one
`python -m streams ui` process, as users run them. Screenshots of every page go to
.run/screenshots/ (git-ignored; the README shows a copy from docs/screenshots/).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote
from pathlib import Path

import pytest

from demo import workload
from devstack.pipeline import Pipeline, wait_for_tasks
from devstack.services import free_port
from tests.browser import chrome, full_page_screenshot
from streams.topics import ensure_topics
from tests.integration.conftest import forget_kombu_keys, own_topics

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".run" / "screenshots"
HOSTILE_NAME = '<script>window.__xss=1</script>"\'<img src=x onerror="window.__xss=2">\u202eevil\u202c\u200f' + "x" * 50_000
HOSTILE_MESSAGE = '<img src=x onerror="window.__xss=3">\u202e"quoted\' & <b>bold</b>'
FINAL_WAIT = 120
# Redis, on a database of its own: Celery's Redis event channels carry the database number, so this
# cluster holds only this module's tasks (every bridge on the shared RabbitMQ hears every test's
# workers). Other tests use 11-14.
BROKER = "redis://127.0.0.1:6379/9"


def leek_label(expect: dict) -> str:
    """The badge the demo workload's expectations call for (docs/state-rules.md, 'Tags')."""
    state = expect["state"]
    if state in ("RECOVERED", "CRITICAL"):
        return f"{state} after {expect['retries']} retries"
    if state == "REVOKED" and expect.get("revocation_reason") == "expired":
        return "REVOKED E"
    if state == "REVOKED" and expect.get("revocation_reason") == "terminated":
        return f"REVOKED T {signal.Signals(expect['signum']).name}"
    if state == "REJECTED":
        return "REJECTED I" if expect.get("rejection") == "ignored" else f"REJECTED Q ×{expect.get('requeues')}"
    return state


def get(url: str, auth: tuple[str, str] | None = None, timeout: float = 30.0) -> tuple[int, str, float]:
    request = urllib.request.Request(url)
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), time.monotonic() - started


def wait_http(url: str, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"UI server exited:\n{proc.tail()}")
        try:
            status, _, _ = get(url, timeout=2)
            if status in (200, 401):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"UI server not answering {url} within {timeout}s:\n{proc.tail()}")


@pytest.fixture(scope="module")
def ch(stack):
    from streams.clickhouse import connect

    client = connect(stack["settings"])
    yield client
    client.disconnect()


@pytest.fixture(scope="module")
def run(stack, ch):
    clickhouse_client = ch
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(cluster=f"ui-{pipeline.run_id}", app_id=f"{base.app_id}-ui-{pipeline.run_id}", ui_port=str(free_port()),
        broker_url=BROKER,
    )  # fmt: skip
    # Topics and a sink group of its own: on the stack's shared group, a test killed before it on the
    # same xdist worker can leave Tansu's group coordinator stuck (no partition for this sink).
    settings = own_topics(settings.replace(sink_group=f"ui-sink-{pipeline.run_id}"), pipeline.run_id)
    ensure_topics(settings)
    pipeline.settings = settings
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        client = pipeline.client
        expected = workload.submit(client, pipeline.worker_hostname)
        chain = client.signature("demo.add", args=(1, 1)) | client.signature("demo.add", args=(2,)) | client.signature("demo.add", args=(3,))
        chain_result = chain.apply_async()
        hostile_name = client.send_task(HOSTILE_NAME, args=(HOSTILE_MESSAGE,), kwargs={"k": HOSTILE_MESSAGE}).id
        hostile_exc = client.send_task("demo.fail", args=(HOSTILE_MESSAGE,)).id
        extra = {hostile_name: "FAILED", hostile_exc: "FAILED"}
        rows = wait_for_tasks(clickhouse_client, settings, [*expected, *extra], pipeline, timeout=FINAL_WAIT)
        chain_ids = [chain_result.id]
        parent = chain_result.parent
        while parent is not None:
            chain_ids.append(parent.id)
            parent = parent.parent
        rows.update(wait_for_tasks(clickhouse_client, settings, chain_ids, pipeline, timeout=FINAL_WAIT))
        ui = pipeline._proc("ui", [sys.executable, "-m", "streams", "ui"], {"UI_PAGE_SIZE": "100"})
        url = f"http://127.0.0.1:{settings.ui_port}"
        wait_http(url + "/healthz", ui)
        yield {"pipeline": pipeline, "settings": settings, "url": url, "expected": expected, "rows": rows,
               "hostile_name": hostile_name, "hostile_exc": hostile_exc, "chain": list(reversed(chain_ids)), "stack": stack}  # fmt: skip
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        forget_kombu_keys(BROKER)


@pytest.fixture(scope="module")
def browser():
    with chrome() as driver:
        yield driver


def shot(driver, name: str) -> Path:
    return full_page_screenshot(driver, SCREENSHOTS / f"{name}.png")


def table_rows(driver) -> dict[str, str]:
    """uuid -> badge text of the task rows on the page (read in one script: htmx may swap the table)."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-uuid]'))"
        ".map(tr => [tr.dataset.uuid, tr.querySelector('.badge').innerText])"
    )
    return {uuid: " ".join(text.split()) for uuid, text in pairs}


def wait_for(driver, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate(driver)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout}s")


def test_demo_tasks_show_their_badges_and_tags(run, browser):
    browser.get(f"{run['url']}/tasks?cluster={run['settings'].cluster}")
    shown = table_rows(browser)
    for uuid, expect in run["expected"].items():
        assert shown.get(uuid) == leek_label(expect), (uuid, expect, shown.get(uuid))
    colours = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('tr[data-uuid] .badge'))"
        ".map(b => [b.dataset.state, getComputedStyle(b).color]))"
    )
    assert len(set(colours.values())) >= 5, colours  # states are told apart by colour too
    assert browser.execute_script("return window.__xss") is None
    shot(browser, "tasks")


def shown_rows(driver) -> dict[str, dict]:
    """uuid -> state, name, worker of the task rows on the page."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-uuid]')).map(tr => [tr.dataset.uuid, tr.dataset.state,"
        " tr.querySelector('td.name').textContent, tr.querySelector('td.worker').textContent])"
    )
    return {u: {"state": s, "name": n.strip(), "worker": w.strip()} for u, s, n, w in rows}


def test_each_filter_narrows_the_list(run, browser):
    from selenium.webdriver.common.by import By

    url, cluster, rows = run["url"], run["settings"].cluster, run["rows"]
    mine = {u: {"state": r["state"], "name": r["name"], "worker": r["worker"] or ""} for u, r in rows.items()}
    assert all(mine[u]["state"] == e["state"] for u, e in run["expected"].items())
    worker = run["pipeline"].worker_hostname
    some = sorted(mine)[0][:6]
    filters = [
        ("state=RECOVERED", lambda t: t["state"] == "RECOVERED"),
        ("state=CRITICAL&state=REVOKED", lambda t: t["state"] in ("CRITICAL", "REVOKED")),
        ("name=demo.flaky", lambda t: t["name"] == "demo.flaky"),
        ("name=DEMO.FL", lambda t: "demo.fl" in t["name"].lower()),  # a part of the name, any case
        ("name=demo.a*", lambda t: t["name"].startswith("demo.a")),  # a glob: demo.add, demo.always_retry
        ("q=" + quote("-state:SUCCEEDED name:demo.*"), lambda t: t["state"] != "SUCCEEDED" and t["name"].startswith("demo.")),
        ("q=" + quote("state:FAILED kwargs:k=x"), lambda t: False),
        (f"worker={worker}", lambda t: t["worker"] == worker),
        ("worker=nobody@nowhere", lambda t: False),
        (f"uuid={some}", None),
        ("window=900", lambda t: True),
    ]
    browser.get(f"{url}/tasks?cluster={cluster}")
    everything = shown_rows(browser)
    assert set(mine) <= set(everything)
    for query, keep in filters:
        browser.get(f"{url}/tasks?cluster={cluster}&{query}")
        got = shown_rows(browser)
        if keep is None:  # uuid search: ids beginning with it
            assert set(got) == {u for u in everything if u.startswith(some)} and got, query
            continue
        assert {u for u in got if u in mine} == {u for u, t in mine.items() if keep(t)}, query  # ours: exactly
        assert all(keep(t) for t in got.values()), query  # and nothing shown breaks the filter (other tests' tasks too)
        assert set(got) <= set(everything) or query.startswith("window")
    assert {u for u in shown_rows(browser)} >= set(mine)  # the window kept every task of this run
    # and through the form, as a person would: tick two states, submit
    browser.get(f"{url}/tasks?cluster={cluster}")
    for state in ("FAILED", "REJECTED"):
        browser.find_element(By.CSS_SELECTOR, f"input[name=state][value={state}]").click()
    browser.find_element(By.CSS_SELECTOR, "#task-filters button[type=submit]").click()
    wait_for(browser, lambda d: "state=FAILED" in d.current_url, 10, "the filtered URL")
    got = shown_rows(browser)
    assert {u for u in got if u in mine} == {u for u, t in mine.items() if t["state"] in ("FAILED", "REJECTED")}
    assert {t["state"] for t in got.values()} == {"FAILED", "REJECTED"}
    shot(browser, "tasks-filtered")


def test_the_search_box_finds_args_kwargs_and_exceptions_and_escapes_them(run, browser):
    """Typed into the search box as a person would: hostile text found by a part of its args,
    kwargs or exception message, shown escaped; a bad search is a 400 page saying why."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, cluster = run["url"], run["settings"].cluster
    part = HOSTILE_MESSAGE[:30]  # before the right-to-left mark, which Celery's repr() of args writes as \\u202e
    quoted = '"' + part.replace('"', '\\"') + '"'
    both = {run["hostile_name"], run["hostile_exc"]}
    for text, want in ((part[:18], both),  # three words, each found: '<img', 'src=x', 'onerror'
                       (quoted, both),  # one phrase
                       ("args:" + quoted.upper(), both),
                       ("kwargs:k=" + quoted, set()),  # a part of a value is not the value
                       (f"exception:{HOSTILE_MESSAGE[27:34]}", {run["hostile_exc"]}),
                       (f"exception:{HOSTILE_MESSAGE[27:34]} -name:demo.*", set())):  # fmt: skip
        browser.get(f"{url}/tasks?cluster={cluster}")
        box = browser.find_element(By.CSS_SELECTOR, "input[name=q]")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)
        wait_for(browser, lambda d: "q=" in d.current_url, 10, "the search URL")
        got = set(shown_rows(browser))
        assert got == want, (text, got, want)
        assert browser.find_element(By.CSS_SELECTOR, "input[name=q]").get_attribute("value") == text
        assert browser.execute_script("return window.__xss") is None
    status, body, _ = get(f"{url}/tasks?cluster={cluster}&q=" + quote(part))  # onerror="... opens a quote it never closes
    assert status == 400 and "unterminated quote" in body
    browser.get(f"{url}/tasks?cluster={cluster}&q=" + quote(f"args:{part[:20]}"))
    shot(browser, "tasks-search")


def test_the_api_answers_in_flowers_shape_on_the_real_server(run):
    """A Flower script's requests against the real UI server (ClickHouse 18.16, the run's real
    Celery tasks): Flower's shapes and Celery's state names; the native endpoints besides."""
    import json

    from streams.ui.api import CELERY_STATE

    url, worker = run["url"], run["pipeline"].worker_hostname

    def api(path):
        status, body, _ = get(url + path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    tasks = api(f"/api/tasks?workername={quote(worker)}&limit=1000")
    for uuid, expect in run["expected"].items():
        if uuid in tasks:
            assert tasks[uuid]["state"] == CELERY_STATE[expect["state"]] and tasks[uuid]["monitor_state"] == expect["state"]
    received = {u for u, e in run["expected"].items() if run["rows"][u].get("received_at")}
    assert received <= set(tasks)
    assert all(t["worker"] == worker and t["uuid"] == u for u, t in tasks.items())
    assert set(api(f"/api/tasks?workername={quote(worker)}&state=FAILURE")) == {
        u for u, t in tasks.items() if t["monitor_state"] in ("FAILED", "CRITICAL")}  # fmt: skip
    page = api(f"/api/tasks?workername={quote(worker)}&sort_by=-received&limit=3&offset=1")
    newest_received = sorted((t["received"], u) for u, t in tasks.items() if t["received"])[::-1]
    assert list(page) == [u for _, u in newest_received[1:4]]
    adds = api(f"/api/tasks?taskname=demo.add&workername={quote(worker)}")
    assert adds and {t["name"] for t in adds.values()} == {"demo.add"}
    found = api(f"/api/tasks?workername={quote(worker)}&search=" + quote('"' + HOSTILE_MESSAGE[:30].replace('"', '\\"') + '"'))
    assert set(found) == {run["hostile_name"], run["hostile_exc"]}
    info = api(f"/api/task/info/{run['hostile_exc']}")
    assert info["state"] == "FAILURE" and info["exception"].startswith("ValueError(") and "<img src=x" in info["exception"]
    assert get(url + "/api/task/info/no-such-task")[0] == 404
    assert "demo.add" in api("/api/task/types")["task-types"]
    workers = api(f"/api/workers?workername={quote(worker)}")
    assert workers[worker]["alive"] in (True, False) and workers[worker]["stats"]["pid"]
    assert isinstance(api("/api/queues/length")["active_queues"], list)
    cluster = run["settings"].cluster
    assert cluster in api("/api/v1/clusters")["clusters"]
    recovered = next(u for u, e in run["expected"].items() if e["state"] == "RECOVERED")
    one = api(f"/api/v1/tasks/{recovered}?cluster={cluster}")
    assert one["badge"]["label"] == leek_label(run["expected"][recovered]) and len(one["attempts"]) == run["expected"][recovered]["retries"] + 1
    assert api("/api/openapi.json")["openapi"].startswith("3.")


def test_failure_groups_page_groups_escapes_and_links_to_the_tasks(run, browser):
    """The failures of the run grouped (cluster, name, exception type, fingerprint), hostile
    messages shown as text, each group's "tasks »" listing exactly the failed tasks of the group."""
    from selenium.webdriver.common.by import By

    url, cluster, rows = run["url"], run["settings"].cluster, run["rows"]
    browser.get(f"{url}/failures?cluster={cluster}")
    groups = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr.group')).map(tr => ({name: tr.dataset.name, type: tr.dataset.exceptionType,"
        " count: +tr.dataset.count, fingerprint: tr.querySelector('td.fingerprint').textContent, trend: tr.querySelector('td.trend').textContent}))"
    )
    failed = {u: r for u, r in rows.items() if r["state"] in ("FAILED", "CRITICAL")}
    assert sum(g["count"] for g in groups) == len(failed) and failed
    hostile = next(g for g in groups if g["type"] == "ValueError" and "onerror" in g["fingerprint"])
    assert hostile["name"] == "demo.fail" and hostile["fingerprint"].startswith("ValueError('<img src=x onerror=")
    assert len(hostile["trend"]) == 12 and set(hostile["trend"]) <= set("▁▂▃▄▅▆▇█")
    assert browser.execute_script("return window.__xss") is None
    shot(browser, "failures")
    link = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr.group')).find(tr => tr.dataset.exceptionType === 'ValueError'"
        " && tr.querySelector('td.fingerprint').textContent.includes('onerror')).querySelector('a.tasks-link').href"
    )
    browser.get(link)
    got = shown_rows(browser)
    want = {u for u, r in failed.items() if r["name"] == "demo.fail" and "onerror" in (r.get("exception") or "")}
    assert set(got) == want and run["hostile_exc"] in want
    assert browser.find_element(By.CSS_SELECTOR, "input[name=q]").get_attribute("value").startswith("state:FAILED,CRITICAL name:=demo.fail")
    assert browser.execute_script("return window.__xss") is None


def test_a_retried_then_recovered_task_shows_every_attempt_on_its_worker(run, browser):
    uuid = next(u for u, e in run["expected"].items() if e["state"] == "RECOVERED")
    browser.get(f"{run['url']}/task?cluster={run['settings'].cluster}&uuid={uuid}")
    attempts = browser.execute_script(
        "return Array.from(document.querySelectorAll('.attempt')).map(a => ({n: a.dataset.attempt, worker: a.dataset.worker,"
        " types: Array.from(a.querySelectorAll('tr[data-type]')).map(tr => tr.dataset.type)}))"
    )
    worker = run["pipeline"].worker_hostname
    assert [a["n"] for a in attempts] == ["0", "1", "2"]
    assert all(a["worker"] == worker for a in attempts)
    for a, ending in zip(attempts, ("task-retried", "task-retried", "task-succeeded")):
        assert {"task-received", "task-started", ending} <= set(a["types"]), a
    assert "RECOVERED after 2 retries" in " ".join(browser.find_element("css selector", ".task-head .badge").text.split())
    shot(browser, "task-recovered")


def test_a_workflow_is_drawn_with_badges_and_links(run, browser):
    chain = run["chain"]
    browser.get(f"{run['url']}/task?cluster={run['settings'].cluster}&uuid={chain[1]}")
    nodes = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.graph a.node')).map(a => [a.dataset.uuid, a.dataset.state, a.getAttribute('href')])"
    )
    assert [n[0] for n in nodes] == chain and {n[1] for n in nodes} == {"SUCCEEDED"}
    assert all(n[2].startswith("/task?") and n[0] in n[2] for n in nodes)
    assert len(browser.find_elements("css selector", "svg.graph path.edge")) == 2
    shot(browser, "task-workflow")


def test_hostile_text_renders_as_text(run, browser):
    cluster = run["settings"].cluster
    browser.get(f"{run['url']}/tasks?cluster={cluster}")
    name_cell = browser.execute_script(f"return document.querySelector('tr[data-uuid=\"{run['hostile_name']}\"] td.name').textContent")
    assert name_cell.startswith(HOSTILE_NAME[:60]) and f"({len(HOSTILE_NAME):,} characters)" in name_cell  # cut, length said
    browser.get(f"{run['url']}/task?cluster={cluster}&uuid={run['hostile_name']}")
    heading = browser.execute_script("return document.querySelector('h1.task-name bdi').textContent")
    assert heading.startswith('<script>window.__xss=1</script>"\'<img src=x onerror=') and len(heading) == 2000
    args = browser.execute_script("return document.querySelector('pre[data-field=args]').textContent")
    assert '<img src=x onerror="window.__xss=3">' in args and "<b>bold</b>" in args  # repr() of the tuple, as sent
    assert browser.execute_script("return document.querySelectorAll('main script, main img').length") == 0
    shot(browser, "task-hostile")
    browser.get(f"{run['url']}/task?cluster={cluster}&uuid={run['hostile_exc']}")
    exception = browser.execute_script("return document.querySelector('pre[data-field=exception]').textContent")
    assert '<img src=x onerror="window.__xss=3">' in exception and "<b>bold</b>" in exception  # the repr Celery sent
    assert browser.execute_script(
        "return document.querySelectorAll('main img').length + Array.from(document.querySelectorAll('main b')).filter(b => b.textContent === 'bold').length"
    ) == 0
    assert browser.execute_script("return window.__xss") is None


def test_the_list_updates_without_reload_within_two_seconds_of_clickhouse(run, browser, ch):
    clickhouse_client = ch
    settings, url = run["settings"], run["url"]
    browser.get(f"{url}/tasks?cluster={settings.cluster}")
    browser.execute_script("window.__kept = 'no reload'")
    uuid = run["pipeline"].client.send_task("demo.sleep", args=(1.5,)).id
    db = settings.clickhouse_database
    seen_in_ui: dict[str, float] = {}
    landed: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "SUCCEEDED" not in seen_in_ui:
        result = clickhouse_client.execute(
            f"SELECT state FROM {db}.tasks FINAL WHERE cluster = %(c)s AND uuid = %(u)s", {"c": settings.cluster, "u": uuid}
        )
        now = time.monotonic()
        if result:
            landed.setdefault(result[0][0], now)
        state = (table_rows(browser).get(uuid) or "").split(" ")[0]
        if state:
            seen_in_ui.setdefault(state, time.monotonic())
        time.sleep(0.05)
    assert "SUCCEEDED" in seen_in_ui, (landed, seen_in_ui)
    assert browser.execute_script("return window.__kept") == "no reload"
    lag = seen_in_ui["SUCCEEDED"] - landed["SUCCEEDED"]
    print(f"SUCCEEDED shown {lag:.2f}s after it was in ClickHouse")  # pytest -s shows it
    assert lag <= 2.0, f"SUCCEEDED in ClickHouse {lag:.2f}s before the page showed it"
    assert "live · updated" in browser.find_element("id", "live-status").text


def test_analytics_draws_its_charts_from_local_assets_only(run, browser):
    browser.get(f"{run['url']}/analytics?cluster={run['settings'].cluster}")
    wait_for(browser, lambda d: len(d.find_elements("css selector", "canvas[data-drawn]")) >= 6, 15, "six drawn charts")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert resources and all(r.startswith(run["url"]) for r in resources), resources
    assert any(r.endswith("/vendor/chart.umd.min.js") for r in resources)
    shot(browser, "analytics")


def test_workers_page_shows_a_sigkilled_worker_going_offline(run, browser):
    pipeline, settings = run["pipeline"], run["settings"]
    host = pipeline.worker_hostname
    browser.get(f"{run['url']}/workers?cluster={settings.cluster}")
    badge = f"return (document.querySelector('tr[data-hostname=\"{host}\"] .badge') || {{}}).innerText"
    assert wait_for(browser, lambda d: (d.execute_script(badge) or "").startswith(("HEARTBEAT", "ONLINE")), 30, "a live worker")
    shot(browser, "workers")
    browser.execute_script("window.__kept = 'no reload'")
    celery = next(p for p in pipeline.procs if p.name == "celery-worker")
    celery.signal(signal.SIGKILL, group=True)  # no worker-offline event: only the missing heartbeats tell
    label = wait_for(browser, lambda d: (t := " ".join((d.execute_script(badge) or "").split())).startswith("OFFLINE") and t, 30, "OFFLINE")
    assert label == "OFFLINE heartbeat-expired"
    assert browser.execute_script("return window.__kept") == "no reload"
    shot(browser, "workers-offline")


def test_auth_row_limit_and_query_timeout(run):
    pipeline, stack = run["pipeline"], run["stack"]
    port = free_port()
    ui = pipeline._proc("ui", [sys.executable, "-m", "streams", "ui"], {
        "UI_PORT": str(port), "UI_BASIC_AUTH": "admin:s3cret", "UI_ROW_LIMIT": "5", "UI_QUERY_TIMEOUT": "1",
    })  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", ui)
    cluster = run["settings"].cluster
    assert get(f"{url}/tasks?cluster={cluster}")[0] == 401
    assert get(f"{url}/tasks?cluster={cluster}", ("admin", "nope"))[0] == 401
    status, body, _ = get(f"{url}/tasks?cluster={cluster}", ("admin", "s3cret"))
    assert status == 200 and len(re.findall(r"<tr data-uuid=", body)) == 5 and "UI_ROW_LIMIT (5) reached" in body
    status, body, _ = get(f"{url}/tasks?cluster={cluster}&before=abc", ("admin", "s3cret"))
    assert status == 400

    clickhouse_pid = stack["clickhouse"].pid()
    os.kill(clickhouse_pid, signal.SIGSTOP)  # ClickHouse hangs: every query waits
    try:
        status, body, elapsed = get(f"{url}/tasks?cluster={cluster}", ("admin", "s3cret"))
    finally:
        os.kill(clickhouse_pid, signal.SIGCONT)
    assert status == 504 and "UI_QUERY_TIMEOUT" in body, (status, body[:300])
    assert elapsed < 6, f"the page took {elapsed:.1f}s with UI_QUERY_TIMEOUT=1"
    assert get(f"{url}/tasks?cluster={cluster}", ("admin", "s3cret"))[0] == 200  # back once ClickHouse is
