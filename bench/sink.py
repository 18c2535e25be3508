"""`make bench-sink`: rows/s from Kafka into ClickHouse, and report latency on >= 1M events.

A private Tansu and ClickHouse (18.16) on free ports. The task-events topic is pre-loaded with
>= 1,000,000 recorded task events (the shared load fixture, uuids rewritten per copy, in the
bridge's packs as it writes them under load: ~500 events per pack) and the task-states topic with the engine's final record of each of their tasks.
Then the sink (the same class `streams worker` runs) drains both, insert-then-commit, timed
from its first batch to the last row; then the same again with N `python -m streams sink`
processes in one consumer group (--processes, into a second database); then every report
query runs 3 times on the result and its best time is kept. Writes bench/results/sink.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from bench.engine import load_events
from demo.backlog import produce_events, produce_task_records
from devstack import services
from devstack.__main__ import prepare
from devstack import dev_settings
from streams.config import Settings
from streams.report import DEFAULT_QUERIES, load_query
from streams.clickhouse import connect
from streams.sink.consumer import ClickHouseSink

ROOT = Path(__file__).resolve().parent.parent


def scale_out(settings: Settings, run_dir: Path, processes: int, total: int) -> dict:
    """The same topics drained again by ``processes`` `python -m streams sink` processes (a new group) into
    a fresh database; rows counted in ClickHouse from the first one to the last."""
    from devstack.pipeline import Pipeline
    from streams.migrate import migrate

    settings = settings.replace(clickhouse_database="bench_scaleout", sink_group=f"{settings.sink_group}-scaleout")
    migrate(connect(settings, with_database=False).execute, settings.clickhouse_database)
    client = connect(settings)
    db = settings.clickhouse_database

    def rows() -> int:
        return sum(client.execute(f"SELECT count() FROM {db}.{table}")[0][0] for table in ("events", "tasks"))

    pipeline = Pipeline(settings, run_dir / "logs")
    try:
        for i in range(processes):
            pipeline._proc(f"sink{i}", [services.python_exe(), "-m", "streams", "sink"])
        first_at, first_count = None, 0
        deadline = time.monotonic() + 900
        while (count := rows()) < total and time.monotonic() < deadline:
            if count and first_at is None:  # the clock starts at the first batch (startup and group join excluded)
                first_at, first_count = time.monotonic(), count
            pipeline.check_alive()
            time.sleep(0.05)
        elapsed = time.monotonic() - (first_at or time.monotonic())
    finally:
        pipeline.stop()
    timed = count - first_count
    return {"processes": processes, "rows": count, "rows_timed": timed, "seconds": elapsed, "rows_per_second": timed / elapsed if elapsed else 0.0}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=50_000, help="SINK_BATCH_ROWS for the run")
    parser.add_argument("--processes", type=int, default=2, help="then the same rows again with this many sink processes in one group (0 = skip)")
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    kafka_port, ch_tcp, ch_http = services.free_port(), services.free_port(), services.free_port()
    tansu, argv_, env = services.tansu(run_dir, kafka_port)
    tansu.start(argv_, env=env, timeout=15)
    clickhouse, argv_, env, ready = services.clickhouse(run_dir, ch_tcp, ch_http)
    clickhouse.start(argv_, env=env, cwd=run_dir / "clickhouse", ready=ready, timeout=30)
    results: dict = {"machine_cores": os.cpu_count()}
    try:
        settings = dev_settings(
            environ={}, kafka_bootstrap=f"127.0.0.1:{kafka_port}", clickhouse_port=ch_tcp, cluster="bench",
            sink_group=f"bench-sink-{os.getpid()}", sink_batch_rows=args.batch_rows, sink_batch_seconds=1.0,
        )  # fmt: skip
        prepare(settings)
        events = [e for e in load_events(args.events * 10 // 7) if e["type"].startswith("task-")][: args.events]
        t0 = time.monotonic()
        n_events = produce_events(settings, events)
        n_tasks = produce_task_records(settings, events)
        total = n_events + n_tasks
        print(f"bench-sink: {n_events:,} events + {n_tasks:,} task records pre-loaded in {time.monotonic() - t0:.0f}s")

        sink = ClickHouseSink(settings)
        thread = threading.Thread(target=sink.run, daemon=True)
        rss_before = services.rss_mb(os.getpid())
        started = time.monotonic()
        thread.start()
        rss_max, first_at, first_rows = rss_before, None, 0
        while (done := sum(sink.inserted.values())) < total and time.monotonic() - started < 900:
            if first_at is None and done:  # the clock starts at the first batch, as for the scale-out run
                first_at, first_rows = time.monotonic(), done
            rss_max = max(rss_max, services.rss_mb(os.getpid()))
            time.sleep(0.05)
        elapsed = time.monotonic() - (first_at or started)
        sink.stop()
        thread.join(30)
        inserted = dict(sink.inserted)
        results["sink"] = {
            "rows": sum(inserted.values()), "by_table": inserted, "seconds": elapsed,
            "rows_per_second": (sum(inserted.values()) - first_rows) / elapsed, "batch_rows": args.batch_rows,
            "process_rss_growth_mb": rss_max - rss_before,
        }  # fmt: skip
        r = results["sink"]
        print(f"  sink    : {r['rows_per_second']:,.0f} rows/s ({r['rows']:,} rows, {elapsed:.1f}s first batch to last: {inserted}; "
              f"batches of {args.batch_rows:,}; goal 200,000 rows/s)")  # fmt: skip

        if args.processes:
            results["scale_out"] = scale_out(settings, run_dir, args.processes, total)
            r = results["scale_out"]
            print(f"  {args.processes} sink processes: {r['rows_per_second']:,.0f} rows/s ({r['rows']:,} rows in {r['seconds']:.1f}s, "
                  f"first row to last; {r['rows_per_second'] / results['sink']['rows_per_second']:.2f}x one sink)")  # fmt: skip

        client = connect(settings)
        params = {"cluster": "", "name": "", "since": 0}
        latencies = {}
        for name in DEFAULT_QUERIES:
            sql = load_query(name, settings.clickhouse_database).sql
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                client.execute(sql, params)
                best = min(best, time.perf_counter() - t)
            latencies[name] = best * 1000
        results["query_ms"] = latencies
        counted = client.execute(f"SELECT count() FROM {settings.clickhouse_database}.events")[0][0]
        print(f"  queries : on {counted:,} events / {n_tasks:,} tasks, best of 3 (goal < 500 ms each)")
        for name, ms in latencies.items():
            print(f"    {name:28} {ms:8.1f} ms{'' if ms < 500 else '  OVER GOAL'}")
    finally:
        clickhouse.stop()
        tansu.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sink.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
