"""`make bench-bridge`: events/s through the bridge, RabbitMQ -> Kafka, with its CPU and RSS.

The recorded load (80,216 real events, repeated with fresh uuids) is published into the
`celeryev` exchange as `task.multi` batches (worker events one per message), into the bridge's
durable queue, before the bridge starts; then the bridge drains it into a private Tansu, in
packs (one Kafka record per partition per flush). The clock runs from the bridge's start until
Kafka acknowledged every event (the bridge's bridge_events_out_total, checked against the packs
in Kafka at the end). Writes bench/results/bridge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import orjson
import psutil
from celery.events.event import get_exchange
import urllib.request

from kafka import TopicPartition
from kombu import Connection, Queue

from bench.engine import load_events
from devstack.pipeline import Pipeline
from devstack import services
from devstack import dev_settings
from streams.config import Settings
from streams.connections import librdkafka_options
from streams.packs import decode_pack
from streams.tansu import fetch_highwaters

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime



def events_out(metrics_addr: str) -> int:
    """Events Kafka acknowledged so far, from the bridge's /metrics (0 while it starts)."""
    try:
        text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("bridge_events_out_total{")))


def packs_in_kafka(settings: Settings, tps: list) -> tuple[int, int, int]:
    """(packs, events, bytes) on the event topics, read back (librdkafka's consumer)."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as Partition

    highwaters = fetch_highwaters([settings.kafka_bootstrap], tps)
    consumer = Consumer({**librdkafka_options(settings), "group.id": "bench-bridge-readback", "enable.auto.commit": False})
    consumer.assign([Partition(tp.topic, tp.partition, 0) for tp in tps])
    left = {(tp.topic, tp.partition): highwaters[tp] for tp in tps if highwaters[tp]}
    packs = events = size = 0
    deadline = time.monotonic() + 120
    try:
        while left and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error():
                    continue
                packs, events, size = packs + 1, events + len(decode_pack(message.value()).entries), size + len(message.value())
                key = (message.topic(), message.partition())
                if key in left and message.offset() + 1 >= left[key]:
                    del left[key]
    finally:
        consumer.close()
    return packs, events, size


def messages(events: list[dict], batch: int) -> list[tuple[str, bytes]]:
    out, pending = [], []
    for e in events:
        e = {k: v for k, v in e.items() if k != "local_received"}  # raw bodies have no receiver field
        if e["type"].startswith("task-"):
            pending.append(e)
            if len(pending) >= batch:
                out.append(("task.multi", orjson.dumps(pending)))
                pending = []
        else:
            out.append((e["type"].replace("-", "."), orjson.dumps(e)))
    if pending:
        out.append(("task.multi", orjson.dumps(pending)))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="events per task.multi message")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    args = parser.parse_args(argv)

    events = load_events(args.events)
    bodies = messages(events, args.batch)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    port = services.free_port()
    tansu, argv_, env = services.tansu(run_dir, port)
    tansu.start(argv_, env=env)
    metrics_addr = f"127.0.0.1:{services.free_port()}"
    settings = dev_settings(
        kafka_bootstrap=f"127.0.0.1:{port}", broker_url=args.broker, cluster=f"bench-{os.getpid()}", bridge_metrics_addr=metrics_addr
    )
    pipeline = Pipeline(settings, run_dir / "logs")
    try:
        from streams.topics import ensure_topics

        ensure_topics(settings)
        with Connection(settings.broker_url) as conn:
            exchange = get_exchange(conn, settings.bridge_event_exchange)
            queue = Queue(
                settings.bridge_queue_name, exchange=exchange, routing_key="#", durable=True, auto_delete=False,
                queue_arguments={"x-max-length": settings.bridge_queue_max_length, "x-message-ttl": settings.bridge_queue_ttl_ms},
            )  # fmt: skip
            queue(conn.channel()).declare()
            with conn.Producer(exchange=exchange) as producer:
                for routing_key, body in bodies:
                    producer.publish(body, routing_key=routing_key, content_type="application/json", content_encoding="utf-8")
        print(f"bench-bridge: {len(events):,} events in {len(bodies):,} broker messages (task.multi of {args.batch}) queued")

        others = {"tansu": tansu.pid(), "rabbitmq": next((p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"), None)}
        others_cpu0 = {name: cpu_seconds(pid) for name, pid in others.items() if pid}
        machine0 = psutil.cpu_times()
        t0 = time.monotonic()
        bridge = pipeline.start_bridge()
        topics = [settings.topic_task_events, settings.topic_worker_events]
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        rss_max, produced, first = 0.0, 0, None  # first: (events, CPU seconds) once the first flush is in
        while time.monotonic() - t0 < 600:
            rss_max = max(rss_max, services.rss_mb(bridge.pid))
            produced = events_out(metrics_addr)
            if produced and first is None:
                first = (produced, cpu_seconds(bridge.pid), time.monotonic())
            if produced >= len(events):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(bridge.pid)
        others_cpu = {name: (cpu_seconds(others[name]) - before) / elapsed for name, before in others_cpu0.items()}
        machine = psutil.cpu_times()
        busy = sum(getattr(machine, f) - getattr(machine0, f) for f in ("user", "system", "nice", "irq", "softirq"))
        idle = machine.idle - machine0.idle
        others_cpu["machine busy"] = busy / (busy + idle) * (os.cpu_count() or 1)
        packs, in_kafka, size = packs_in_kafka(settings, tps)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        tansu.stop()
    result = {
        "events": len(events),
        "events_acknowledged": produced,
        "events_in_kafka": in_kafka,
        "packs_in_kafka": packs,
        "events_per_pack": in_kafka / packs if packs else 0.0,
        "bytes_per_event": size / in_kafka if in_kafka else 0.0,
        "seconds": elapsed,
        "events_per_second": produced / elapsed,
        "bridge_cpu_seconds": cpu,
        "bridge_cpu_share": cpu / elapsed,
        "bridge_rss_max_mb": rss_max,
        # past its start (imports, connections): events per second of the bridge's own CPU, what it
        # would do with a core to itself (this machine's other tenants take CPU from it)
        "events_per_cpu_second": (produced - first[0]) / max(cpu - first[1], 1e-9) if first else 0.0,
        "events_per_second_after_start": (produced - first[0]) / max(t0 + elapsed - first[2], 1e-9) if first else 0.0,
        "other_cpu_share": others_cpu,  # cores busy during the drain (RabbitMQ is the machine's: other users count too)
    }
    print(f"  throughput : {result['events_per_second']:,.0f} events/s ({produced:,} events in {elapsed:.1f}s, goal 80,000/s; "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"  packs      : {packs:,} records hold {in_kafka:,} events ({result['events_per_pack']:.0f} per pack, "
          f"{result['bytes_per_event']:.0f} bytes per event)")
    print(f"  bridge CPU : {cpu:.1f}s = {result['bridge_cpu_share']:.0%} of one core;  RSS max {rss_max:.0f} MB (goal <= 100 MB)")
    print(f"  after start: {result['events_per_second_after_start']:,.0f} events/s from its first Kafka ack to the last; "
          f"{result['events_per_cpu_second']:,.0f} events per second of bridge CPU")
    print("  meanwhile  : " + ", ".join(f"{name} {share:.0%}" for name, share in others_cpu.items()) + f" of a core (of {os.cpu_count()})")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bridge.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
