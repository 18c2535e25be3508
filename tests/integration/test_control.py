"""Task control end to end with real parts: a Celery worker on RabbitMQ, the bridge, Tansu, the
streams worker, ClickHouse, `celery-monitor control`, the web UI and chromium.

One pipeline for the module (its start is the slow part); each test acts on tasks of its own:
revoke a waiting ETA task, terminate a running one (REVOKED T SIGTERM), retry a CRITICAL task that
then succeeds (from the task page, in the browser: dry run, then confirm), bulk retry by query with
a dry run (hostile and cut argument text refused, never executed; a second run retries nothing),
a viewer refused, and the audit rows.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request

import pytest

from devstack.pipeline import Pipeline, wait_for_tasks
from devstack.services import free_port
from streams.topics import ensure_topics
from streams.ui.auth import hash_password
from tests.integration.conftest import own_topics
from tests.integration.test_ui_browser import wait_for as wait, wait_http

SECRET = "control-test-secret-" + "x" * 20
USERS = {"alice": ("alice-pw", "operator"), "bob": ("bob-pw", "viewer")}


def auth_header(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{USERS[user][0]}".encode()).decode()


def api(url: str, user: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                     headers={"Authorization": auth_header(user), "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def records(ch, settings, uuids: list[str]) -> dict[str, dict]:
    rows, types = ch.execute(f"SELECT * FROM {settings.clickhouse_database}.tasks FINAL WHERE cluster = %(c)s AND uuid IN %(u)s",
                             {"c": settings.cluster, "u": tuple(uuids)}, with_column_types=True)  # fmt: skip
    names = [n for n, _ in types]
    return {r["uuid"]: r for r in (dict(zip(names, row)) for row in rows)}


def wait_state(ch, settings, uuid: str, states: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        found = records(ch, settings, [uuid]).get(uuid, {})
        if found.get("state") in states:
            return found
        time.sleep(0.3)
    raise AssertionError(f"task {uuid} not in {states} within {timeout}s: {found.get('state')}")


def audit_rows(ch, settings, request_id: str, timeout: float = 30.0) -> list[dict]:
    """The request's rows in ClickHouse once the sink wrote its 'done' phase."""
    deadline = time.monotonic() + timeout
    while True:
        rows, types = ch.execute(f"SELECT * FROM {settings.clickhouse_database}.audit FINAL WHERE request_id = %(r)s",
                                 {"r": request_id}, with_column_types=True)  # fmt: skip
        names = [n for n, _ in types]
        out = [dict(zip(names, r)) for r in rows]
        if any(r["uuid"] == "" and r["phase"] == "done" for r in out) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory):
    from streams.clickhouse import connect

    ch = connect(stack["settings"])
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(cluster=f"control-{pipeline.run_id}", app_id=f"{base.app_id}-control-{pipeline.run_id}",
                                         sink_group=f"control-sink-{pipeline.run_id}", streams_metrics_addr="off")  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    users = tmp_path_factory.mktemp("control") / "users.toml"
    users.write_text("".join(f'[users.{u}]\npassword = "{hash_password(pw, iterations=100_000)}"\nrole = "{role}"\n\n' for u, (pw, role) in USERS.items()))
    control_port, ui_port = free_port(), free_port()
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        control = pipeline._proc("control", [sys.executable, "-m", "streams", "control"],
                                 {"CONTROL_SECRET": SECRET, "CONTROL_PORT": str(control_port)})  # fmt: skip
        wait_http(f"http://127.0.0.1:{control_port}/healthz", control)
        ui = pipeline._proc("ui", [sys.executable, "-m", "streams", "ui"],
                            {"UI_PORT": str(ui_port), "UI_USERS_FILE": str(users), "CONTROL_URL": f"http://127.0.0.1:{control_port}",
                             "CONTROL_SECRET": SECRET, "UI_REFRESH_SECONDS": "0.5"})  # fmt: skip
        url = f"http://127.0.0.1:{ui_port}"
        wait_http(url + "/healthz", ui)
        yield {"pipeline": pipeline, "settings": settings, "url": url, "ch": ch, "control_port": control_port, "tmp": users.parent}
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        ch.disconnect()


def test_revoke_a_waiting_eta_task_and_terminate_a_running_one(run):
    client, settings, ch, url = run["pipeline"].client, run["settings"], run["ch"], run["url"]
    waiting = client.send_task("demo.sleep", args=(0.1,), countdown=15).id
    running = client.send_task("demo.sleep", args=(60,)).id
    wait_state(ch, settings, waiting, {"RECEIVED"})
    wait_state(ch, settings, running, {"STARTED"})

    status, answer = api(url + "/api/v1/control", "alice", {"action": "revoke", "dry_run": False,
                                                            "selection": {"cluster": settings.cluster, "uuids": [waiting, running]}})  # fmt: skip
    assert status == 200, answer
    by = {t["uuid"]: t for t in answer["tasks"]}
    assert by[waiting]["outcome"] == "ok" and "acknowledged by" in by[waiting]["detail"]  # every worker on the broker answers
    assert not by[running]["eligible"] and "terminate" in by[running]["reason"]

    status, answer = api(url + "/api/v1/control", "alice", {"action": "terminate", "dry_run": False,
                                                            "selection": {"cluster": settings.cluster, "uuids": [running]},
                                                            "options": {"signal": "SIGTERM"}})  # fmt: skip
    assert status == 200 and answer["done"] == 1, answer
    terminated = wait_state(ch, settings, running, {"REVOKED"}, timeout=30)
    assert (terminated["revocation_reason"], terminated["signum"]) == ("terminated", 15)
    # the ETA task is revoked when its countdown ends (Celery checks its revoked set then)
    revoked = wait_state(ch, settings, waiting, {"REVOKED", "SUCCEEDED"}, timeout=40)
    assert revoked["state"] == "REVOKED"


def test_bulk_retry_by_query_with_a_dry_run(run):
    client, settings, ch, url, tmp = run["pipeline"].client, run["settings"], run["ch"], run["url"], run["tmp"]
    marker = tmp / "bulk-pwned"
    paths = [tmp / f"bulk-{i}" for i in range(3)]
    good = [client.send_task("demo.needs_file", args=(str(p),)).id for p in paths]
    hostile_text = f"(__import__('os').system('touch {marker}'),)"
    # A producer's own argsrepr (no retry: Celery's retry would write the real args again)
    hostile = client.send_task("demo.fail", args=("bulk hostile",), argsrepr=hostile_text).id
    cut = client.send_task("demo.needs_file", args=(str(tmp / "bulk-cut") + "x" * 2000,)).id
    rows = wait_for_tasks(ch, settings, good + [hostile, cut], run["pipeline"], timeout=90)
    assert {u: r["state"] for u, r in rows.items()} == {**{u: "CRITICAL" for u in good + [cut]}, hostile: "FAILED"}
    assert rows[hostile]["args"] == hostile_text
    for p in paths:
        p.write_text("now it exists")

    selection = {"cluster": settings.cluster, "state": ["FAILURE"], "q": "bulk"}  # Celery's FAILURE: FAILED and CRITICAL
    status, viewer = api(url + "/api/v1/control", "bob", {"action": "retry", "dry_run": True, "selection": selection})
    assert status == 403 and "viewer" in viewer["error"]

    status, dry = api(url + "/api/v1/control", "alice", {"action": "retry", "dry_run": True, "selection": selection})
    assert status == 200, dry
    assert (dry["selected"], dry["eligible"], dry["done"]) == (5, 3, 0)
    reasons = {t["uuid"]: t["reason"] for t in dry["tasks"] if not t["eligible"]}
    assert "not a Python literal" in reasons[hostile] and "cut" in reasons[cut]

    status, real = api(url + "/api/v1/control", "alice", {"action": "retry", "dry_run": False, "selection": selection})
    assert status == 200 and (real["eligible"], real["done"]) == (3, 3), real
    copies = {t["uuid"]: t["new_uuid"] for t in real["tasks"] if t["outcome"] == "ok"}
    assert set(copies) == set(good)
    done = wait_for_tasks(ch, settings, list(copies.values()), run["pipeline"], timeout=60)
    for original, copy in copies.items():
        assert done[copy]["state"] == "SUCCEEDED" and done[copy]["parent_id"] == original and done[copy]["name"] == "demo.needs_file"
        assert done[copy]["root_id"] == (rows[original]["root_id"] or original)
    assert not marker.exists()  # the hostile text was never evaluated, nor sent

    status, again = api(url + "/api/v1/control", "alice", {"action": "retry", "dry_run": False, "selection": selection})
    assert status == 200 and again["done"] == 0 and all("already retried" in t["reason"] for t in again["tasks"] if t["uuid"] in copies)

    audit = audit_rows(ch, settings, real["request_id"])
    (request_row,) = [r for r in audit if r["uuid"] == ""]
    assert (request_row["user"], request_row["role"], request_row["action"], request_row["dry_run"], request_row["phase"]) == (
        "alice", "operator", "retry", 0, "done")
    assert (request_row["selected"], request_row["eligible_count"], request_row["done_count"]) == (5, 3, 3)
    assert json.loads(request_row["selection"])["q"] == "bulk"
    task_rows = {r["uuid"]: r for r in audit if r["uuid"]}
    assert {u: r["new_uuid"] for u, r in task_rows.items() if r["new_uuid"]} == copies
    assert task_rows[hostile]["outcome"] == "skipped" and task_rows[hostile]["eligible"] == 0
    dry_audit = audit_rows(ch, settings, dry["request_id"])
    assert [r["dry_run"] for r in dry_audit if r["uuid"] == ""] == [1] and len(dry_audit) == 6

    status, listed = api(f"{url}/api/v1/audit?cluster={settings.cluster}&uuid={good[0]}", "bob")
    assert status == 200 and copies[good[0]] in {t["new_uuid"] for t in listed["tasks"]}


def test_retry_a_critical_task_from_its_page_in_the_browser(run):
    from selenium.webdriver.common.by import By

    from tests.browser import chrome

    client, settings, ch, url, tmp = run["pipeline"].client, run["settings"], run["ch"], run["url"], run["tmp"]
    path = tmp / "page-retry"
    original = client.send_task("demo.needs_file", args=(str(path),)).id
    assert wait_for_tasks(ch, settings, [original], run["pipeline"], timeout=60)[original]["state"] == "CRITICAL"
    path.write_text("ok")
    page = f"{url}/task?cluster={settings.cluster}&uuid={original}"
    with chrome() as browser:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth_header("bob")}})
        browser.get(page)
        assert "bob · viewer" in browser.page_source
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-control] form")  # a viewer sees no control

        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth_header("alice")}})
        browser.get(page)
        form = browser.find_element(By.CSS_SELECTOR, "#task-control form")
        assert [o.text for o in form.find_elements(By.CSS_SELECTOR, "select[name=action] option")] == ["retry"]
        form.find_element(By.CSS_SELECTOR, "button.dry-run").click()
        confirm = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#task-control button.confirm"), 30, "the dry run's answer")[0]
        assert "1 eligible" in browser.find_element(By.CSS_SELECTOR, "#task-control .control-answer").text
        confirm.click()
        link = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#task-control a.new-task"), 30, "the retried copy")[0]
        copy = link.text.strip()
        assert wait_for_tasks(ch, settings, [copy], run["pipeline"], timeout=60)[copy]["state"] == "SUCCEEDED"

        # linked both ways: the copy's page names its original, the original's its copy
        browser.get(f"{url}/task?cluster={settings.cluster}&uuid={copy}")
        back = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "a.retry-of"), 30, "retry of")
        assert back[0].text.strip() == original
        browser.get(page)
        assert browser.find_element(By.CSS_SELECTOR, "a.retried-as").text.strip() == copy
        browser.get(f"{url}/audit")
        assert "alice" in browser.find_element(By.CSS_SELECTOR, "table.audit-requests").text


def test_control_refuses_unsigned_replayed_and_unknown(run):
    """The control service itself: a request without the signature, with a used nonce, or from a
    viewer is refused, whatever the UI does."""
    from streams.control.signing import HEADER, sign

    base = f"http://127.0.0.1:{run['control_port']}"

    def post(path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, data=body, method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    _, issued = post("/v1/nonce", b"{}")
    payload = {"nonce": issued["nonce"], "user": "mallory", "role": "operator", "action": "retry", "dry_run": True,
               "selection": {"cluster": run["settings"].cluster}}  # fmt: skip
    body = json.dumps(payload).encode()
    assert post("/v1/actions", body)[0] == 401
    assert post("/v1/actions", body, {HEADER: sign("w" * 40, body)})[0] == 401
    assert post("/v1/actions", body, {HEADER: sign(SECRET, body)})[0] == 200
    assert post("/v1/actions", body, {HEADER: sign(SECRET, body)})[0] == 401  # the nonce was used
    _, issued = post("/v1/nonce", b"{}")
    viewer = json.dumps({**payload, "nonce": issued["nonce"], "role": "viewer"}).encode()
    assert post("/v1/actions", viewer, {HEADER: sign(SECRET, viewer)})[0] == 403


def test_terminate_from_the_task_page_and_a_dry_run_from_the_list_in_the_browser(run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.browser import chrome

    client, settings, ch, url = run["pipeline"].client, run["settings"], run["ch"], run["url"]
    running = client.send_task("demo.sleep", args=(60,)).id
    wait_state(ch, settings, running, {"STARTED"})
    failed = [client.send_task("demo.fail", args=(f"listed {i}",)).id for i in range(2)]
    wait_for_tasks(ch, settings, failed, run["pipeline"], timeout=60)
    with chrome() as browser:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth_header("alice")}})
        browser.get(f"{url}/task?cluster={settings.cluster}&uuid={running}")
        form = browser.find_element(By.CSS_SELECTOR, "#task-control form")
        Select(form.find_element(By.NAME, "action")).select_by_value("terminate")
        Select(form.find_element(By.NAME, "signal")).select_by_value("SIGTERM")
        form.find_element(By.CSS_SELECTOR, "button.dry-run").click()
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#task-control button.confirm"), 30, "the dry run's answer")[0].click()
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#task-control tr[data-outcome=ok]"), 30, "the terminate's outcome")
        terminated = wait_state(ch, settings, running, {"REVOKED"}, timeout=30)
        assert (terminated["revocation_reason"], terminated["signum"]) == ("terminated", 15)

        browser.get(f"{url}/tasks?cluster={settings.cluster}&state=FAILED&q=listed")
        form = browser.find_element(By.CSS_SELECTOR, "#list-control form")
        form.find_element(By.CSS_SELECTOR, "button.dry-run").click()
        answer = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#list-control .control-answer"), 30, "the list's dry run")[0]
        assert answer.get_attribute("data-dry-run") == "1"
        assert answer.find_element(By.CSS_SELECTOR, ".eligible").text == "2"
        assert "demo.fail" in answer.find_element(By.CSS_SELECTOR, ".names").text
        assert {r.get_attribute("data-uuid") for r in answer.find_elements(By.CSS_SELECTOR, "tr[data-uuid]")} == set(failed)
