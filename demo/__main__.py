"""`make demo`: the whole pipeline on the local stack with a real Celery worker, then a report.

Starts what is missing of the stack, runs bridge + streams worker + a Celery worker, publishes a
mixed workload, waits until ClickHouse holds the final state of every task (polling, no fixed
sleep), prints the report and stops everything it started.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid

from devstack.__main__ import down, run_dir, up
from streams.config import Settings
from streams.logs import setup_logging
from streams.report import render, run_report
from streams.sink.clickhouse import connect

from .pipeline import Pipeline, PipelineError, wait_for_tasks, wait_for_worker


def main() -> int:
    setup_logging("WARNING")
    logging.getLogger("celery.app.base").setLevel(logging.ERROR)  # the expired task is on purpose
    run_id = uuid.uuid4().hex[:8]
    # A cluster name per run: the report shows this run only, and the bridge queue is the run's own.
    settings = Settings.load(cluster=f"{os.environ.get('CLUSTER') or 'demo'}-{run_id}")
    started = up(settings)
    pipeline = Pipeline(settings, run_dir() / "logs", run_id)
    began = time.monotonic()
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        print(f"[demo] bridge, streams worker and Celery worker {pipeline.worker_hostname} are running")
        from . import workload

        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        print(f"[demo] published {len(expected)} tasks; waiting for their final state in ClickHouse")
        client = connect(settings)
        rows = wait_for_tasks(client, settings, list(expected), pipeline)
        wrong = {u: (rows[u]["state"], e["state"]) for u, e in expected.items() if rows[u]["state"] != e["state"]}
        pipeline.procs[-1].stop()  # warm shutdown: the worker says worker-offline
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
