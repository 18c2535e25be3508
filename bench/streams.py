"""`make bench-streams`: events/s of one streams worker catching up on a backlog, vs its baselines.

A private Tansu is pre-loaded with >= 200k recorded task events (the shared load fixture, uuids
rewritten per copy) twice: in packs on the task-events topic, as the bridge writes them
(bridge/packs.py), and one event per record (v1 envelopes) on a second topic, as the bridge wrote
them before packs. Then one worker at a time starts on it, each with a fresh application id so
each reads the whole backlog:

  naive     bench/faust_baselines.py naive: table set + a send per event, per-event records
  ceiling   a Faust agent that only counts take_events batches of per-event records: the most
            faust-streaming itself delivers to an agent here
  previous  the streams worker before packs (faust_baselines.py batched): take_events batches,
            table writes and state records through Faust's producer
  packs     `python -m streams worker` on the packs (this design)

The clock runs from the first event counted to the last (startup and rebalance are not in it),
read from each worker's /metrics; CPU seconds of the worker over the same window give events per
CPU-second, which other load on the machine does not change. Also: state records published,
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

import orjson

from bench.engine import load_events
from demo.backlog import produce_event_records, produce_events
from devstack.pipeline import Pipeline
from devstack import services
from devstack import dev_settings
from streams.config import Settings
from streams.connections import librdkafka_options
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


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (/proc/<pid>/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(label: str, args: list[str], settings: Settings, run_dir: Path, total: int, timeout: float, topic: str) -> dict:
    port = services.free_port()
    worker_settings = dev_settings(
        kafka_bootstrap=settings.kafka_bootstrap, app_id=f"bench-{label}-{os.getpid()}", cluster=settings.cluster,
        data_dir=str(run_dir / f"faust-{label}"), sink="off", streams_metrics_addr=f"127.0.0.1:{port}",
        topic_task_events=topic,
    )  # fmt: skip
    ensure_topics(worker_settings)  # its changelogs, pre-created (Tansu)
    pipeline = Pipeline(worker_settings, run_dir / "logs")
    proc = pipeline._proc(label, [sys.executable, "-m", *args], {"STREAMS_METRICS_ADDR": f"127.0.0.1:{port}", "STREAMS_SINK": "off"})
    first_at, cpu_first, cpu_last, rss_max, seen = None, 0.0, 0.0, 0.0, {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.alive():
            seen = counters(port)
            done = seen.get("streams_events_in_total", 0)
            now = time.monotonic()
            cpu_last = cpu_seconds(proc.pid)
            if done and first_at is None:
                first_at, cpu_first = now, cpu_last
            rss_max = max(rss_max, services.rss_mb(proc.pid))
            if done >= total:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - (first_at or time.monotonic())
    finally:
        pipeline.stop()
    events = seen.get("streams_events_in_total", 0)
    cpu = cpu_last - cpu_first
    return {
        "events": events,
        "seconds": elapsed,
        "events_per_second": events / elapsed if elapsed else 0.0,
        "cpu_seconds": cpu,
        "events_per_cpu_second": events / cpu if cpu else 0.0,
        "records_out": seen.get("streams_records_out_total", 0),
        "rss_max_mb": rss_max,
        "caught_up": events >= total,
    }


PER_EVENT_TOPIC = "bench.task-events.v1"  # one event per record, for the baselines


def produce_many_tasks(settings: Settings, tasks: int, flush: int = 4000) -> int:
    """``tasks`` finished tasks (task-received + task-succeeded each, distinct uuids), packed as the
    bridge packs them; generated on the fly so the benchmark itself stays small."""
    from confluent_kafka import Producer

    from bridge.envelope import Enveloper
    from bridge.packs import Packer

    enveloper, packer = Enveloper(settings.cluster, "rss"), Packer(settings.cluster, "rss")
    producer = Producer({**librdkafka_options(settings), "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    now, sent, entries = time.time(), 0, []
    for i in range(tasks):
        uuid, host = f"{i:08d}-0000-4000-8000-rss000000000", f"w{i % 50}@host"
        for n, kind in enumerate(("task-received", "task-succeeded")):
            body = {"type": kind, "uuid": uuid, "hostname": host, "pid": 1, "clock": 2 * i + n, "timestamp": now + i / 1e4,
                    "name": "bench.rss", "args": "(1, 2)", "kwargs": "{}", "retries": 0, "result": "3", "runtime": 0.01}  # fmt: skip
            entries.extend(enveloper.wrap(orjson.dumps(body), "task.multi", body["timestamp"]))
        if len(entries) >= flush or i == tasks - 1:
            packs, _ = packer.pack(entries, entries[-1].item["received_at"], lambda kind: settings.topic_partitions)
            for pack in packs:
                while True:
                    try:
                        producer.produce(settings.topic_task_events if pack.kind == "task" else settings.topic_worker_events,
                                         value=pack.value, partition=pack.partition)  # fmt: skip
                        break
                    except BufferError:
                        producer.poll(0.1)
            sent += len(entries)
            entries = []
    if producer.flush(120):
        raise RuntimeError("Kafka did not take the generated tasks")
    return sent


def rss_at(tasks: int, timeout: float) -> None:
    """`python -m bench.streams --rss-tasks N`: one packs worker folds N finished tasks (memory
    store, retention off so every task stays in the table); its RSS once they are all tracked."""
    run_dir = Path(tempfile.mkdtemp(prefix="bench-streams-rss-"))
    port = services.free_port()
    tansu, tansu_argv, env = services.tansu(run_dir, port)
    tansu.start(tansu_argv, env=env)
    try:
        settings = dev_settings(kafka_bootstrap=f"127.0.0.1:{port}", cluster="rss")
        ensure_topics(settings)
        t0 = time.monotonic()
        total = produce_many_tasks(settings, tasks)
        print(f"bench-streams --rss-tasks: {tasks:,} tasks ({total:,} events) pre-loaded in {time.monotonic() - t0:.0f}s")
        os.environ["STREAMS_TASK_RETENTION"] = "0"
        r = run_worker("rss", ["streams", "worker"], settings, run_dir, total, timeout, settings.topic_task_events)
        print(f"  {r['events']:,.0f} events in {r['seconds']:.0f}s ({r['events_per_second']:,.0f}/s): RSS max "
              f"{r['rss_max_mb']:,.0f} MB with {tasks:,} tasks in the table ({r['rss_max_mb'] * 1e6 / tasks / 1e3:,.2f} kB per task)")  # fmt: skip
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "streams-rss.json").write_text(json.dumps({"tasks": tasks, **r}, indent=2))
    finally:
        tansu.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="at least this many task events")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a worker after this long")
    parser.add_argument("--only", default="naive,ceiling,previous,packs", help="workers to run (comma list)")
    parser.add_argument("--rss-tasks", type=int, default=0, help="instead: RSS of one worker tracking this many tasks")
    args = parser.parse_args(argv)
    if args.rss_tasks:
        return rss_at(args.rss_tasks, max(args.timeout, 900.0))
    only = set(args.only.split(","))

    run_dir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    port = services.free_port()
    tansu, tansu_argv, env = services.tansu(run_dir, port)
    tansu.start(tansu_argv, env=env)
    try:
        settings = dev_settings(kafka_bootstrap=f"127.0.0.1:{port}", cluster="bench")
        ensure_topics(settings)
        ensure_topics(dev_settings(kafka_bootstrap=settings.kafka_bootstrap, topic_task_events=PER_EVENT_TOPIC))
        events = [e for e in load_events(args.events * 10 // 7) if e["type"].startswith("task-")][: max(args.events, 1)]
        t0 = time.monotonic()
        total = produce_events(settings, events)
        if only - {"packs"}:
            produce_event_records(settings, events, PER_EVENT_TOPIC)
        print(f"bench-streams: {total:,} task events pre-loaded in {time.monotonic() - t0:.1f}s "
              f"({len({e['uuid'] for e in events}):,} tasks, {settings.topic_partitions} partitions), "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
        results = {"events": total, "partitions": settings.topic_partitions, "machine_cores": os.cpu_count()}
        runs = [
            ("naive", ["bench.faust_baselines", "naive"], PER_EVENT_TOPIC),
            ("ceiling", ["bench.faust_baselines", "ceiling"], PER_EVENT_TOPIC),
            ("previous", ["bench.faust_baselines", "batched"], PER_EVENT_TOPIC),
            ("packs", ["streams", "worker"], settings.topic_task_events),
        ]
        for label, worker_args, topic in runs:
            if label not in only:
                continue
            r = results[label] = run_worker(label, worker_args, settings, run_dir, total, args.timeout, topic)
            status = "" if r["caught_up"] else f"  (NOT caught up: {r['events']:,.0f} of {total:,})"
            print(f"  {label:8}: {r['events_per_second']:>8,.0f} events/s  {r['events_per_cpu_second']:>8,.0f} per CPU-s  "
                  f"{r['records_out']:>9,.0f} state records in {r['seconds']:.1f}s  RSS max {r['rss_max_mb']:.0f} MB{status}")  # fmt: skip
        packs = results.get("packs", {}).get("events_per_second")
        for base, goal in (("ceiling", 3), ("previous", 6), ("naive", None)):
            if packs and results.get(base, {}).get("events_per_second"):
                ratio = results[f"packs_over_{base}"] = packs / results[base]["events_per_second"]
                print(f"  packs / {base:8}: {ratio:5.1f}x" + (f"  (goal >= {goal}x)" if goal else ""))
        if packs:
            print(f"  goal: >= 40,000 events/s for one worker: {'met' if packs >= 40_000 else 'NOT met'} ({packs:,.0f})")
    finally:
        tansu.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "streams.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
