"""`make bench-streams`: events/s of one streams worker catching up on a backlog, vs a naive agent.

The task-events topic of a private Tansu is pre-loaded with >= 200k recorded task events (the
shared load fixture, uuids rewritten per copy, in the bridge's packs). Then one worker
starts on it: first the naive per-event agent (bench/faust_baselines.py naive: table set +
send per event, the baseline), then a Faust agent that only counts (faust_baselines.py
ceiling: the most faust-streaming itself delivers), then `python -m streams worker` (batched), each with a fresh
application id so each reads the whole backlog. The clock runs from the first event counted to the last (startup and
rebalance are not in it), read from each worker's /metrics. Also: state records published,
peak RSS. Writes bench/results/streams.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.engine import load_events
from demo.backlog import produce_events
from demo.pipeline import Pipeline
from devstack import services
from streams.config import Settings
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def counters(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("streams_events_in_total", "streams_records_out_total"):
            if line.startswith(name + "{"):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def run_worker(label: str, args: list[str], settings: Settings, run_dir: Path, total: int, timeout: float) -> dict:
    port = services.free_port()
    worker_settings = Settings.load(
        kafka_bootstrap=settings.kafka_bootstrap, app_id=f"bench-{label}-{os.getpid()}", cluster=settings.cluster,
        data_dir=str(run_dir / f"faust-{label}"), sink="off", streams_metrics_addr=f"127.0.0.1:{port}",
    )  # fmt: skip
    ensure_topics(worker_settings)  # its changelogs, pre-created (Tansu)
    pipeline = Pipeline(worker_settings, run_dir / "logs")
    proc = pipeline._proc(label, [sys.executable, "-m", *args], {"STREAMS_METRICS_ADDR": f"127.0.0.1:{port}", "STREAMS_SINK": "off"})
    first_at, rss_max, seen = None, 0.0, {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.alive():
            seen = counters(port)
            done = seen.get("streams_events_in_total", 0)
            now = time.monotonic()
            if done and first_at is None:
                first_at = now
            rss_max = max(rss_max, services.rss_mb(proc.pid))
            if done >= total:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - (first_at or time.monotonic())
    finally:
        pipeline.stop()
    events = seen.get("streams_events_in_total", 0)
    return {
        "events": events,
        "seconds": elapsed,
        "events_per_second": events / elapsed if elapsed else 0.0,
        "records_out": seen.get("streams_records_out_total", 0),
        "rss_max_mb": rss_max,
        "caught_up": events >= total,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="at least this many task events")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a worker after this long")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    port = services.free_port()
    tansu, tansu_argv, env = services.tansu(run_dir, port)
    tansu.start(tansu_argv, env=env)
    try:
        settings = Settings.load(kafka_bootstrap=f"127.0.0.1:{port}", cluster="bench")
        ensure_topics(settings)
        events = [e for e in load_events(args.events * 10 // 7) if e["type"].startswith("task-")][: max(args.events, 1)]
        t0 = time.monotonic()
        total = produce_events(settings, events)
        print(f"bench-streams: {total:,} task events pre-loaded in {time.monotonic() - t0:.1f}s "
              f"({len({e['uuid'] for e in events}):,} tasks, {settings.topic_partitions} partitions)")  # fmt: skip
        results = {"events": total, "partitions": settings.topic_partitions, "machine_cores": os.cpu_count()}
        runs = [] if args.skip_naive else [("naive", ["bench.faust_baselines", "naive"]), ("ceiling", ["bench.faust_baselines", "ceiling"])]
        runs.append(("batched", ["streams", "worker"]))
        for label, worker_args in runs:
            r = results[label] = run_worker(label, worker_args, settings, run_dir, total, args.timeout)
            status = "" if r["caught_up"] else f"  (NOT caught up: {r['events']:,.0f} of {total:,})"
            print(f"  {label:8}: {r['events_per_second']:>8,.0f} events/s  {r['records_out']:>9,.0f} state records "
                  f"in {r['seconds']:.1f}s  RSS max {r['rss_max_mb']:.0f} MB{status}")  # fmt: skip
        if "naive" in results and results["naive"]["events_per_second"]:
            results["ratio"] = results["batched"]["events_per_second"] / results["naive"]["events_per_second"]
            print(f"  ratio   : {results['ratio']:.1f}x the naive agent (goal: >= 20,000 events/s for the batched worker)")
        if "ceiling" in results and results["ceiling"]["events_per_second"]:
            share = results["batched"]["events_per_second"] / results["ceiling"]["events_per_second"]
            results["share_of_ceiling"] = share
            print(f"  ceiling : the batched worker runs at {share:.0%} of what Faust alone delivers to an agent here")
    finally:
        tansu.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "streams.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
