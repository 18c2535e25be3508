"""The container image, as a team deploys it: built from the Dockerfile (`make image`), its bridge,
worker, sink and UI run as containers (Debian's docker.io, host network: loopback only) against the
test stack with a real Celery workload. Every task exact in ClickHouse, the UI answers, every
container's HEALTHCHECK passes, no process runs as root; init (topics + migrate) comes from the
image too, into a database of its own."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from demo import workload
from devstack import services
from devstack.docker import IMAGE, Engine, build_image, image_env
from devstack.pipeline import Pipeline, wait_for_tasks
from streams.clickhouse import connect

COMPONENTS = ("bridge", "worker", "sink", "ui")


@pytest.fixture(scope="module")
def engine(stack):
    """Our own dockerd (started here unless it runs already) with the image freshly built."""
    from devstack.__main__ import run_dir

    engine = Engine(run_dir())  # the repository's run directory: a rebuild reuses the layer cache
    started = engine.start()
    seconds = build_image(engine)
    print(f"image {IMAGE} built in {seconds:.0f}s")
    yield engine
    if started:
        engine.stop()


def _run(engine, name: str, command: list[str], env: dict[str, str], detach: bool = True) -> str:
    args = ["run", "--network", "host", "--init", "--name", name, "--health-interval", "2s", "--health-start-period", "90s"]
    args += ["-d"] if detach else ["--rm"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    out = engine.docker(*args, IMAGE, *command, check=False, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr).decode(errors="replace")
    return out.stdout.decode().strip()


def _logs(engine, name: str) -> str:
    out = engine.docker("logs", "--tail", "40", name, check=False)
    return (out.stdout + out.stderr).decode(errors="replace")


def test_the_image_runs_the_pipeline(engine, stack, tmp_path):
    run = uuid.uuid4().hex[:6]
    base = stack["settings"]
    settings = base.replace(
        cluster=f"image-{run}", app_id=f"image-{run}", sink_group=f"image-sink-{run}", clickhouse_database=f"image_{run}",
        bridge_metrics_addr=f"127.0.0.1:{services.free_port()}", streams_metrics_addr=f"127.0.0.1:{services.free_port()}",
        sink_metrics_addr=f"127.0.0.1:{services.free_port()}", ui_port=str(services.free_port()), ui_host="127.0.0.1",
        sink="off", store="rocksdb://",
    )  # fmt: skip
    env = image_env(settings)
    names = {c: f"celery-monitor-{c}-{run}" for c in COMPONENTS}
    pipeline = Pipeline(settings, tmp_path / "logs", run)
    try:
        init = _run(engine, f"celery-monitor-init-{run}", ["init"], env, detach=False)
        assert "migrations applied: 0001" in init, init
        for component in COMPONENTS:
            _run(engine, names[component], [component], env)
        pipeline.start_celery_worker()
        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        client = connect(settings)
        rows = wait_for_tasks(client, settings, list(expected), timeout=180)
        for task, fields in expected.items():
            assert {k: rows[task][k] for k in fields} == fields, (task, rows[task])

        with urllib.request.urlopen(f"http://127.0.0.1:{settings.ui_port}/?cluster={settings.cluster}", timeout=10) as page:
            html = page.read().decode()
        assert page.status == 200 and "demo.flaky" in html

        deadline = time.monotonic() + 120
        while True:
            health = {c: _state(engine, names[c])["Health"]["Status"] for c in COMPONENTS}
            if all(status == "healthy" for status in health.values()) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert set(health.values()) == {"healthy"}, {c: (health[c], _logs(engine, names[c])) for c in COMPONENTS}
        for component in COMPONENTS:
            top = engine.docker("top", names[component], "-o", "pid,uid,args").stdout.decode().splitlines()[1:]
            assert top and all(line.split()[1] == "10001" for line in top), (component, top)  # tini, celery-monitor, the sink
        report = engine.docker("run", "--rm", "--network", "host", *sum((["-e", f"{k}={v}"] for k, v in env.items()), []),
                               IMAGE, "report", "--format", "json", "--cluster", settings.cluster).stdout  # fmt: skip
        answers = json.loads(report)
        assert sum(row["tasks"] for row in answers["tasks_by_state"]) == len(expected)
    finally:
        for name in names.values():
            engine.docker("rm", "-f", "-v", name, check=False)
        pipeline.stop()
        pipeline.cleanup_broker()
        connect(settings, with_database=False).execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


def _state(engine, name: str) -> dict:
    return json.loads(engine.docker("inspect", "--format", "{{json .State}}", name).stdout)
