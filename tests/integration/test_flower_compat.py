"""The Flower-compatible API against real Flower (from PyPI) watching the same broker and workload:
the same requests, the same answers for the fields Flower has. Differences that are by design
or Flower's own (docs/api.md) are named here, each with its reason."""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request

import pytest

from demo import workload
from devstack.pipeline import Pipeline, Proc, settings_env, wait_for_tasks
from devstack.services import free_port, port_open
from tests.integration.conftest import forget_kombu_keys

# Redis, on a database of its own: Celery's Redis event channels carry the database number, so
# both monitors hear only this module's workload (other tests use 0, 9, 11-14).
BROKER = "redis://127.0.0.1:6379/10"
FINAL_WAIT = 120
# Fields both have, compared value for value. Not compared, by design: `state` (Flower: the last
# event's state; here Celery's name of the record's state, e.g. a revoked-after-expiry task),
# `timestamp` (Flower: the last event it merged; here the last event's time - the same unless
# events arrive out of order), `clock` (Flower: a Lamport clock; not kept here), `children`
# (Flower links objects it saw; here []), `sent` (Flower only with task_send_sent_event).
SAME = ("uuid", "name", "args", "kwargs", "result", "exception", "traceback", "worker", "received", "started", "succeeded",
        "failed", "retried", "revoked", "rejected", "eta", "expires", "routing_key", "exchange", "root_id", "parent_id")  # fmt: skip


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-6)
    return a == b


@pytest.fixture(scope="module")
def both(stack):
    from streams.clickhouse import connect

    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(cluster=f"flower-{pipeline.run_id}", app_id=f"{base.app_id}-flower-{pipeline.run_id}",
                                         ui_port=str(free_port()), broker_url=BROKER)  # fmt: skip
    pipeline.settings = settings
    flower_port = free_port()
    flower = None
    ch = connect(settings)
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        # -A demo.tasks: Flower listens on the demo app's event exchange (the stack's, from the environment)
        flower = Proc("flower", [sys.executable, "-m", "celery", "-A", "demo.tasks", "--broker", BROKER, "flower", "--address=127.0.0.1",
                                 f"--port={flower_port}", "--persistent=false"],
                      {**settings_env(settings), "FLOWER_UNAUTHENTICATED_API": "true"}, stack["run_dir"] / "logs" / f"flower-{pipeline.run_id}.log").start()  # fmt: skip
        deadline = time.monotonic() + 30
        while not port_open(flower_port):
            assert flower.alive() and time.monotonic() < deadline, flower.tail()
            time.sleep(0.2)
        pipeline.start_celery_worker()
        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        wait_for_tasks(ch, settings, list(expected), pipeline, timeout=FINAL_WAIT)
        ui = pipeline._proc("ui", [sys.executable, "-m", "streams", "ui"])
        url = f"http://127.0.0.1:{settings.ui_port}"
        deadline = time.monotonic() + 30
        while not port_open(int(settings.ui_port)):
            assert ui.alive() and time.monotonic() < deadline, ui.tail()
            time.sleep(0.2)
        flower_url = f"http://127.0.0.1:{flower_port}"
        deadline = time.monotonic() + 60  # Flower folds events as they come: wait until it has every task final
        while time.monotonic() < deadline:
            theirs = get_json(f"{flower_url}/api/tasks")
            if set(expected) <= set(theirs) and all(theirs[u]["state"] in ("SUCCESS", "FAILURE", "REVOKED", "REJECTED") for u in expected):
                break
            time.sleep(1)
        yield {"ours": url, "flower": flower_url, "expected": expected, "worker": pipeline.worker_hostname}
    finally:
        if flower is not None:
            flower.stop()
        pipeline.stop()
        pipeline.cleanup_broker()
        forget_kombu_keys(BROKER)
        ch.disconnect()


def test_same_tasks_same_fields(both):
    worker = urllib.request.quote(both["worker"])
    ours = get_json(f"{both['ours']}/api/tasks?workername={worker}")
    theirs = get_json(f"{both['flower']}/api/tasks?workername={worker}")
    wanted = set(both["expected"])
    assert wanted <= set(theirs), sorted(wanted - set(theirs))
    received = {u for u in wanted if theirs[u].get("received")}
    assert received <= set(ours)
    assert len(received) >= len(wanted) - 1  # all but the expired task (revoked before any worker received it)
    differences, compared = [], 0
    for uuid in sorted(received):
        for field in SAME:
            if field in theirs[uuid] and not same(ours[uuid].get(field), theirs[uuid][field]):
                differences.append((uuid, both["expected"][uuid]["name"], field, ours[uuid].get(field), theirs[uuid][field]))
            compared += theirs[uuid].get(field) is not None
    assert not differences, differences[:10]
    assert compared >= 8 * len(received)  # values compared, not absences
    assert set(ours[next(iter(received))]) >= set(theirs[next(iter(received))]) - {"worker"}  # every field Flower has, we have


def test_same_answers_to_the_same_requests(both):
    worker = urllib.request.quote(both["worker"])
    for query in ("taskname=demo.add", "taskname=demo.add&sort_by=-started", "state=FAILURE", "state=SUCCESS", "sort_by=name&limit=5", "sort_by=-received&limit=3",
                  "taskname=demo.fail&sort_by=started"):  # fmt: skip
        ours = get_json(f"{both['ours']}/api/tasks?workername={worker}&{query}")
        theirs = get_json(f"{both['flower']}/api/tasks?workername={worker}&{query}")
        if "sort_by=name" in query:  # ties between equal names are ordered differently: compare the names
            assert [t["name"] for t in ours.values()] == [t["name"] for t in theirs.values()], query
        elif query.startswith("state="):
            # RECOVERED tasks (retried, then succeeded) are SUCCESS in both; CRITICAL ones FAILURE in both. A task that
            # raised Reject(requeue=False) sends only task-failed: FAILURE in Flower, REJECTED here (by design).
            rejected = {u for u, e in both["expected"].items() if e["state"] == "REJECTED"}
            assert set(ours) == set(theirs) - rejected, (query, set(ours) ^ (set(theirs) - rejected))
        elif "sort_by" not in query:  # without sort_by the order is each one's own (here: newest first seen first)
            assert set(ours) == set(theirs), (query, set(ours) ^ set(theirs))
        else:
            assert list(ours) == list(theirs), query
    uuid = next(u for u, e in both["expected"].items() if e["state"] == "RECOVERED")
    ours = get_json(f"{both['ours']}/api/task/info/{uuid}")
    theirs = get_json(f"{both['flower']}/api/task/info/{uuid}")
    assert {f: ours[f] for f in ("name", "state", "result", "retries", "worker")} == {f: theirs[f] for f in ("name", "state", "result", "retries", "worker")}
    assert set(get_json(f"{both['flower']}/api/task/types")["task-types"]) <= set(get_json(f"{both['ours']}/api/task/types")["task-types"])
    assert both["worker"] in get_json(f"{both['ours']}/api/workers") and both["worker"] in get_json(f"{both['flower']}/api/workers?refresh=1")
