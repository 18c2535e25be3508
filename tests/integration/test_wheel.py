"""The package as a team installs it: the wheel built from this repository, installed with pip into a
fresh virtualenv outside the repository, holds everything it runs (the ClickHouse schema, the
questions, the JSON Schemas, the UI's assets) and nothing it doesn't (demo, devstack, bench, tests);
its `celery-monitor` migrates an empty ClickHouse database, creates the topics and runs the
pipeline (bridge, worker with its sink, UI) on a real Celery workload, from a directory that is
not the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest

from demo import workload
from devstack import services
from devstack.pipeline import ROOT, Pipeline, wait_for_tasks
from streams.clickhouse import connect


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin directory, wheel path): the wheel built as `make wheel` builds it, pip-installed."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next(out.glob("celery_stream_monitor-*.whl"))
    venv = out / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}"], capture_output=True, text=True, cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv / "bin", wheel


def test_the_wheel_holds_what_it_runs_and_nothing_else(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.startswith("celery_stream_monitor-")}
    assert top == {"bridge", "streams"}, top
    migrations = sorted(n for n in names if n.startswith("streams/sql/migrations/") and n.endswith(".sql"))
    assert [Path(n).name[:4] for n in migrations] == [p.name[:4] for p in sorted((ROOT / "sql" / "migrations").glob("*.sql"))]
    assert len([n for n in names if n.startswith("streams/sql/queries/")]) == len(list((ROOT / "sql" / "queries").glob("*.sql")))
    assert "streams/sql/fragments/waiting_to_retry.sql" in names
    assert {f"streams/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")} <= set(names)
    assert "streams/ui/node_modules/htmx.org/dist/htmx.min.js" in names and "streams/ui/node_modules/chart.js/dist/chart.umd.min.js" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_the_installed_package_migrates_and_runs_the_pipeline(installed, stack, tmp_path):
    bin_dir, _ = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = uuid.uuid4().hex[:6]
    settings = stack["settings"].replace(
        cluster=f"wheel-{run}", app_id=f"wheel-{run}", sink_group=f"wheel-sink-{run}", clickhouse_database=f"wheel_{run}",
        data_dir=str(tmp_path / "data"), ui_port=str(services.free_port()),
        streams_metrics_addr=f"127.0.0.1:{services.free_port()}", bridge_metrics_addr=f"127.0.0.1:{services.free_port()}",
    )  # fmt: skip
    env = {k: v for k, v in settings.environ().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    monitor = str(bin_dir / "celery-monitor")

    def cli(*args: str) -> str:
        result = subprocess.run([monitor, *args], env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    assert cli("--version").strip() == "celery-monitor 0.2.0"
    migrations = sorted(p.name[:4] for p in (ROOT / "sql" / "migrations").glob("*.sql"))
    assert cli("migrate").strip() == f"migrations applied: {', '.join(migrations)}"
    assert cli("migrate").strip() == "migrations applied: none (up to date)"
    assert {p["name"] for p in json.loads(cli("topics", "--plan"))} >= {settings.topic_task_events, f"{settings.app_id}-tasks-changelog"}
    assert f"{settings.app_id}-tasks-changelog" in cli("topics")

    pipeline = Pipeline(settings, tmp_path / "logs", run)
    try:
        bridge = pipeline._proc("bridge", [monitor, "bridge"], {"PATH": env["PATH"]}, cwd=elsewhere)
        pipeline.wait_for_log(bridge, "consuming Celery events", 60)
        pipeline._proc("streams", [monitor, "worker"], {"PATH": env["PATH"]}, cwd=elsewhere)
        ui = pipeline._proc("ui", [monitor, "ui"], {"PATH": env["PATH"]}, cwd=elsewhere)
        pipeline.start_celery_worker()
        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        client = connect(settings)
        rows = wait_for_tasks(client, settings, list(expected), pipeline, timeout=180)
        for task, fields in expected.items():
            assert {k: rows[task][k] for k in fields} == fields, (task, rows[task])
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.ui_port}/?cluster={settings.cluster}", timeout=10) as page:
            assert page.status == 200 and "demo.flaky" in page.read().decode(), ui.tail()
        answers = json.loads(cli("report", "--format", "json", "--cluster", settings.cluster))
        assert sum(row["tasks"] for row in answers["tasks_by_state"]) == len(expected)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        connect(settings, with_database=False).execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    assert not any(p.name.startswith(("demo", "devstack")) for p in (bin_dir.parent / "lib").rglob("*") if p.parent.name == "site-packages")
