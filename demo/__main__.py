"""`make demo`: the whole pipeline on the local stack with a real Celery worker, then a report.

Starts what is missing of the stack, runs bridge + streams worker + a Celery worker and the web UI
(`streams ui`, unless UI_PORT=off), publishes a mixed workload, waits until ClickHouse holds the
final state of every task (polling, no fixed sleep), prints the report and the UI's address, and
stops everything it started — or, with ``--keep-running`` (``make demo KEEP=1``), starts a Celery
worker again, sends the workload once more and keeps the stack and the UI up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import urllib.request
import uuid

from devstack.__main__ import down, run_dir, up
from devstack import dev_settings
from streams.logs import setup_logging
from streams.report import render, run_report
from streams.clickhouse import connect

from devstack.pipeline import Pipeline, PipelineError, wait_for_tasks, wait_for_worker


def start_ui(pipeline: Pipeline, timeout: float = 20.0) -> str | None:
    """`python -m streams ui` beside the pipeline; its URL, or None (UI_PORT=off, or it could not
    start: the reason, e.g. a taken UI_PORT, is printed and the demo goes on without it)."""
    from streams.ui.server import parse_port, url

    if parse_port(pipeline.settings) is None:
        return None
    proc = pipeline._proc("ui", [sys.executable, "-m", "streams", "ui"])
    base = url(pipeline.settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            print(f"[demo] the web UI did not start: {proc.tail(3)}", file=sys.stderr)
            return None
        try:
            with urllib.request.urlopen(base + "healthz", timeout=1):
                return base
        except OSError:
            time.sleep(0.2)
    print(f"[demo] the web UI did not answer within {timeout:.0f}s: {proc.tail(3)}", file=sys.stderr)
    return None


def wait_for_interrupt() -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-running", action="store_true",
                        help="after the report keep the stack, a Celery worker and the web UI running until Ctrl-C")  # fmt: skip
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    logging.getLogger("celery.app.base").setLevel(logging.ERROR)  # the expired task is on purpose
    run_id = uuid.uuid4().hex[:8]
    # A cluster name per run: the bridge queue is the run's own and the report shows what it read (other
    # Celery workers sending events on the same vhost are part of it too: a cluster is a vhost).
    settings = dev_settings(cluster=f"{os.environ.get('CLUSTER') or 'demo'}-{run_id}")
    started = up(settings)
    pipeline = Pipeline(settings, run_dir() / "logs", run_id)
    began = time.monotonic()
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        print(f"[demo] bridge, streams worker and Celery worker {pipeline.worker_hostname} are running")
        ui = start_ui(pipeline)
        if ui:
            print(f"[demo] web UI: {ui}tasks?cluster={settings.cluster} (live while the workload runs)")
        from . import workload

        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        print(f"[demo] published {len(expected)} tasks; waiting for their final state in ClickHouse")
        client = connect(settings)
        rows = wait_for_tasks(client, settings, list(expected), pipeline)
        wrong = {u: (rows[u]["state"], e["state"]) for u, e in expected.items() if rows[u]["state"] != e["state"]}
        next(p for p in pipeline.procs if p.name == "celery-worker").stop()  # warm shutdown: the worker says worker-offline
        wait_for_worker(client, settings, pipeline.worker_hostname, "OFFLINE")
        print(f"[demo] caught up in {time.monotonic() - began:.1f}s\n")

        def execute(sql, params):
            result, types = client.execute(sql, params, with_column_types=True)
            return [n for n, _ in types], result

        print(render(run_report(execute, settings.clickhouse_database, {"cluster": settings.cluster, "since": 0})))
        if wrong:
            print(f"[demo] UNEXPECTED states (got, expected): {wrong}", file=sys.stderr)
            return 1
        print(f"[demo] all {len(expected)} tasks reached their expected state; logs in {run_dir() / 'logs'}")
        if args.keep_running:
            pipeline.start_celery_worker()
            workload.submit(pipeline.client, pipeline.worker_hostname)
            where = f"the web UI at {ui}tasks?cluster={settings.cluster}" if ui else "ClickHouse (the web UI is off)"
            print(f"[demo] kept running: the stack, a Celery worker ({pipeline.worker_hostname}, the workload sent again) and "
                  f"{where}. Ctrl-C stops everything the demo started.")  # fmt: skip
            wait_for_interrupt()
        elif ui:
            print("[demo] the web UI stops with the demo; `make demo KEEP=1` keeps it (and the stack) running")
        return 0
    except PipelineError as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        if started:
            down(settings, started)


if __name__ == "__main__":
    sys.exit(main())
