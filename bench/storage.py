"""`make bench-storage`: what Tansu's durable storage costs against memory storage, in one run.

For each storage (memory; s3 = a bucket on moto's S3 server on loopback), a private Tansu:
1. pre-load: recorded task events produced in packs as the bridge writes them (events/s, Tansu's
   and the S3 server's CPU);
2. catch-up: one `celery-monitor worker` (sink off) folds the backlog (events/s from its /metrics);
3. restart (s3 only): Tansu killed with SIGKILL and restarted; seconds until it serves the topic's
   high watermark again, and the records it still holds.
Prints a table and writes bench/results/storage.json. The dev stack defaults to memory
(TANSU_STORAGE); the broker-restart tests and `make chaos` use s3.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from bench.engine import load_events
from bench.streams import cpu_seconds, run_worker
from demo.backlog import produce_events
from devstack import dev_settings, services
from streams.tansu import fetch_highwaters
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent


def one(storage: str, events: list[dict], timeout: float) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-storage-{storage}-"))
    port = services.free_port()
    s3 = services.s3(run_dir, services.free_port()) if storage == "s3" else None
    tansu, argv, env = services.tansu(run_dir, port, s3)
    out: dict = {"storage": storage}
    try:
        if s3 is not None:
            s3.start()
        tansu.start(argv, env=env, timeout=15)
        settings = dev_settings(kafka_bootstrap=f"127.0.0.1:{port}", cluster="bench")
        ensure_topics(settings)
        pids = {"tansu": tansu.pid(), **({"s3": s3.service.pid()} if s3 else {})}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        t0 = time.monotonic()
        total = produce_events(settings, events)
        seconds = time.monotonic() - t0
        out["preload"] = {"events": total, "seconds": round(seconds, 2), "events_per_second": round(total / seconds),
                          "cpu_seconds": {k: round(cpu_seconds(p) - cpu0[k], 2) for k, p in pids.items()}}  # fmt: skip
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        worker = run_worker(f"packs-{storage}", ["streams", "worker"], settings, run_dir, total, timeout, settings.topic_task_events)
        worker["broker_cpu_seconds"] = {k: round(cpu_seconds(p) - cpu1[k], 2) for k, p in pids.items()}
        worker["rss_mb"] = {k: round(services.rss_mb(p)) for k, p in pids.items()}
        out["catch_up"] = worker
        if s3 is not None:
            from confluent_kafka import TopicPartition

            tps = [TopicPartition(settings.topic_task_events, p) for p in range(settings.topic_partitions)]
            before = sum(fetch_highwaters([settings.kafka_bootstrap], tps).values())
            os.kill(tansu.pid(), signal.SIGKILL)
            while services.pid_alive(pids["tansu"]):
                time.sleep(0.05)
            t0 = time.monotonic()
            tansu.start(argv, env=env, timeout=30)
            after = sum(fetch_highwaters([settings.kafka_bootstrap], tps).values())
            out["restart"] = {"seconds_to_serve": round(time.monotonic() - t0, 2), "records_before": before, "records_after": after}
    finally:
        tansu.stop()
        if s3 is not None:
            s3.service.stop()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="task events pre-loaded")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    events = [e for e in load_events(args.events * 10 // 7) if e["type"].startswith("task-")][: args.events]
    print(f"bench-storage: {len(events):,} task events, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = {}
    for storage in ("memory", "s3"):
        r = results[storage] = one(storage, events, args.timeout)
        c, p = r["catch_up"], r["preload"]
        print(f"  {storage:6}: pre-load {p['events_per_second']:>7,} events/s (CPU {p['cpu_seconds']}); worker catch-up "
              f"{c['events_per_second']:>7,.0f} events/s in {c['seconds']:.1f}s{'' if c['caught_up'] else ' NOT caught up'} "
              f"(broker CPU {c['broker_cpu_seconds']}, RSS MB {c['rss_mb']})")  # fmt: skip
        if "restart" in r:
            print(f"          restart after kill -9: serving again in {r['restart']['seconds_to_serve']}s, "
                  f"{r['restart']['records_after']:,} of {r['restart']['records_before']:,} records kept")  # fmt: skip
    for phase, key in (("pre-load", "preload"), ("catch-up", "catch_up")):
        ratio = results["memory"][key]["events_per_second"] / max(results["s3"][key]["events_per_second"], 1)
        print(f"  s3 storage is {ratio:.1f}x slower than memory at {phase}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "storage.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
