"""`make bench-ops`: what queue-length sampling and the celery-exporter metrics cost.

* Sampling (bridge/queues.py) on the machine's RabbitMQ and Redis: queues filled to known depths
  (read back exactly, or the run fails), one sample of 10 and of 100 queues timed (passive
  declares; Redis: LLEN of each list and its priority sub-queues through kombu), best of 5; and
  the discovery step (two inspect broadcasts, each waiting Celery's 1 s reply timeout). Every
  queue created is deleted.
* Exporter (streams/exporter.py): the recorded load (>= 200,000 task events) folded in batches
  of 2,000 as the streams agent does, counting into the exporter (contribution before,
  task_changed after, take_dirty per batch) with the exporter's calls timed apart, best of 5;
  then the time of one scrape and the size of the persisted counts.

Writes bench/results/ops.json.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from kombu import Connection, Exchange, Queue

from bench.engine import load_events
from devstack import dev_settings

ROOT = Path(__file__).resolve().parent.parent
BROKERS = {"rabbitmq": "amqp://guest:guest@127.0.0.1:5672//", "redis": "redis://127.0.0.1:6379/12"}  # a database of its own
BATCH = 2000


def sampling(name: str, url: str) -> dict:
    from bridge.queues import QueueSampler
    from devstack.pipeline import delete_queues
    from streams.config import Settings

    run = uuid.uuid4().hex[:6]
    queues = [f"bench-ops-{run}-{i}" for i in range(100)]
    depths = {q: (i * 7) % 50 for i, q in enumerate(queues)}
    out: dict = {}
    keys_before = _redis_keys(url)
    try:
        with Connection(url) as conn:
            channel = conn.channel()
            with conn.Producer() as producer:
                for q, depth in depths.items():
                    queue = Queue(q, Exchange(q, "direct"), q)
                    queue(channel).declare()
                    for i in range(depth):
                        producer.publish({"i": i}, exchange=queue.exchange, routing_key=q, priority=i % 10)
            for count in (10, 100):
                settings = dev_settings(environ={}, broker_url=url, cluster="bench", bridge_queues=",".join(queues[:count]), bridge_queue_discovery=False)
                sampler = QueueSampler(settings, "bench", lambda records: None)
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    records = sampler.sample(conn)
                    times.append(time.perf_counter() - t0)
                got = {r["queue"]: r["messages"] for r in records if r["role"] == "task"}
                assert got == {q: depths[q] for q in queues[:count]}, "a depth was not read back exactly"
                out[f"sample_{count}_queues_ms"] = round(min(times) * 1000, 2)
                out[f"per_queue_ms_{count}"] = round(min(times) * 1000 / count, 3)
            settings = dev_settings(environ={}, broker_url=url, cluster="bench", bridge_queue_discovery=True)
            sampler = QueueSampler(settings, "bench", lambda records: None)
            t0 = time.perf_counter()
            sampler.discover(conn)
            out["discovery_s"] = round(time.perf_counter() - t0, 2)
    finally:
        delete_queues(url, queues)
        _delete_new_redis_keys(url, keys_before)
    print(f"  {name:8s}: 10 queues {out['sample_10_queues_ms']} ms, 100 queues {out['sample_100_queues_ms']} ms "
          f"({out['per_queue_ms_100']} ms/queue); discovery (inspect x2) {out['discovery_s']} s")  # fmt: skip
    return out


def _redis_keys(url: str) -> set | None:
    if not url.startswith("redis"):
        return None
    import redis

    return set(redis.Redis.from_url(url).keys("*"))


def _delete_new_redis_keys(url: str, before: set | None) -> None:
    """kombu's bookkeeping the discovery created (reply queue bindings and deadlines)."""
    if before is not None:
        import redis

        client = redis.Redis.from_url(url)
        for key in set(client.keys("*")) - before:
            client.delete(key)


def exporter() -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    from streams.engine import TaskEvent, derive_task, fold_task, iter_events
    from streams.exporter import CeleryExporter, contribution

    events = [e for value in load_events(200_000) for e in iter_events(value, "bench") if isinstance(e, TaskEvent)]

    def fold() -> tuple[float, float, int, CeleryExporter, dict]:
        """One pass; the exporter's calls timed on their own (a differential of two whole passes
        drowned in this shared machine's noise)."""
        table: dict = {}
        counting = CeleryExporter()
        persisted: dict = {}
        spent = 0.0
        changes = 0
        clock = time.perf_counter
        t0 = clock()
        for start in range(0, len(events), BATCH):
            before, changed = {}, {}
            for event in events[start : start + BATCH]:
                key = event.key
                state = changed.get(key) or table.get(key)
                if key not in before:
                    c0 = clock()
                    before[key] = contribution(state)
                    spent += clock() - c0
                state, _ = fold_task(state, event)
                table[key] = changed[key] = state
            for key, state in changed.items():
                record = derive_task(state)
                c0 = clock()
                counting.task_changed(hash(state["uuid"]) % 8, before[key], state, record)
                spent += clock() - c0
            changes += len(changed)
            c0 = clock()
            persisted.update(counting.take_dirty())
            spent += clock() - c0
        return clock() - t0, spent, changes, counting, persisted

    runs = [fold() for _ in range(5)]
    total, spent, changes, counting, persisted = min(runs, key=lambda r: r[1])
    registry = CollectorRegistry()
    registry.register(counting)
    t0 = time.perf_counter()
    text = generate_latest(registry)
    scrape = time.perf_counter() - t0
    out = {
        "task_events": len(events),
        "task_changes": changes,
        "fold_with_exporter_events_per_s": round(len(events) / total),
        "exporter_us_per_event": round(spent / len(events) * 1e6, 2),
        "exporter_us_per_task_change": round(spent / changes * 1e6, 2),
        "exporter_share_of_fold": round(spent / total, 3),
        "scrape_ms": round(scrape * 1000, 1),
        "series": sum(1 for line in text.splitlines() if line and not line.startswith(b"#")),
        "persisted_keys": len(persisted),
        "persisted_bytes": len(json.dumps(persisted)),
    }
    print(f"  exporter: {out['exporter_us_per_event']} µs per event, {out['exporter_us_per_task_change']} µs per task change "
          f"({out['exporter_share_of_fold']:.0%} of fold+derive+count at {out['fold_with_exporter_events_per_s']:,} events/s); "
          f"scrape {out['scrape_ms']} ms for {out['series']:,} samples; {out['persisted_keys']} persisted keys, {out['persisted_bytes']:,} bytes")  # fmt: skip
    return out


def main() -> None:
    print("bench-ops: queue-length sampling")
    result = {name: sampling(name, url) for name, url in BROKERS.items()}
    print("bench-ops: celery-exporter metrics from the engine's states")
    result["exporter"] = exporter()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ops.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'ops.json'}")


if __name__ == "__main__":
    main()
