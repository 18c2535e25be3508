"""celery-exporter's metrics from the engine's states: exact, duplicate-free, per partition."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine import TaskEvent, Tracker, derive_task, fold_task, iter_events
from streams.exporter import QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS, CeleryExporter, contribution, hostname_of, partition_of_key

PARTITIONS = 4
TYPE_OF_COUNTER = {
    "celery_task_sent_total": ("task-sent",),
    "celery_task_received_total": ("task-received",),
    "celery_task_started_total": ("task-started",),
    "celery_task_succeeded_total": ("task-succeeded",),
    "celery_task_failed_total": ("task-failed",),
    "celery_task_rejected_total": ("task-rejected",),
    "celery_task_revoked_total": ("task-revoked",),
    "celery_task_retried_total": ("task-retried",),
}


def task_events(values, cluster="c"):
    return [item for value in values for item in iter_events(value, cluster) if isinstance(item, TaskEvent)]


def run(exporter: CeleryExporter, events, batch: int = 50, table: dict | None = None) -> dict:
    """What the app does: per batch, the contribution at a task's first sight, fold, count, persist."""
    states = table if table is not None else {}
    persisted = {}
    for start in range(0, len(events), batch):
        before, changed = {}, {}
        for event in events[start : start + batch]:
            key = event.key
            state = changed.get(key, states.get(key))
            if key not in before:
                before[key] = contribution(state)
            state, _ = fold_task(state, event)
            states[key] = changed[key] = state
        for key, state in changed.items():
            exporter.task_changed(hash(state["uuid"]) % PARTITIONS, before[key], state, derive_task(state))
        persisted.update(exporter.take_dirty())
    return persisted


def samples(exporter: CeleryExporter) -> dict[tuple, float]:
    registry = CollectorRegistry()
    registry.register(exporter)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def totals(exporter: CeleryExporter) -> Counter:
    got = Counter()
    for (name, _), value in samples(exporter).items():
        got[name] += value
    return got


def distinct_named_events(events) -> Counter:
    """Distinct events per counter, of tasks whose name is known (what the exporter counts)."""
    tracker = Tracker()
    for event in events:
        tracker.add(event)
    named = {r["uuid"] for r in tracker.task_records() if r["name"]}
    seen = {(e.uuid, e.identity): e.body["type"] for e in events if e.uuid in named}
    by_type = Counter(seen.values())
    return Counter({counter: sum(by_type[t] for t in types) for counter, types in TYPE_OF_COUNTER.items()})


def test_counters_equal_the_distinct_events_of_each_type(scenario_events):
    events = task_events(scenario_events)
    exporter = CeleryExporter()
    run(exporter, events)
    got = totals(exporter)
    expected = distinct_named_events(events)
    assert expected["celery_task_retried_total"] > 0 and expected["celery_task_rejected_total"] > 0
    for counter, count in expected.items():
        assert got[counter] == count, counter
    assert got["celery_task_runtime_count"] == expected["celery_task_succeeded_total"]


def test_duplicates_and_any_order_count_the_same(scenario_events):
    events = task_events(scenario_events)
    reference = CeleryExporter()
    run(reference, events)
    rng = random.Random(7)
    for batch in (1, 7, 1000):
        shuffled = events + rng.sample(events, len(events) // 2)  # a third of the deliveries are duplicates
        rng.shuffle(shuffled)
        exporter = CeleryExporter()
        run(exporter, shuffled, batch=batch)
        assert _counter_totals(exporter) == _counter_totals(reference), batch
        again = Counter(_counter_totals(exporter))
        run(exporter, shuffled, batch=batch, table={})  # everything delivered again to a fresh table: counted again
        assert _counter_totals(exporter) == Counter({k: 2 * v for k, v in again.items()})


def _counter_totals(exporter) -> dict:
    return {name: value for name, value in totals(exporter).items() if name.endswith("_total")}


def test_labels_are_celery_exporters(scenario_events):
    exporter = CeleryExporter()
    run(exporter, task_events(scenario_events))
    got = samples(exporter)
    failed = [dict(labels) for (name, labels) in got if name == "celery_task_failed_total" and got[(name, labels)] > 0]
    assert failed and all(set(labels) == {"name", "hostname", "exception", "queue_name", "cluster", "partition"} for labels in failed)
    assert {"ValueError", "KeyError", "TimeLimitExceeded"} <= {labels["exception"] for labels in failed}
    received = [dict(labels) for (name, labels) in got if name == "celery_task_received_total"]
    assert all(set(labels) == {"name", "hostname", "queue_name", "cluster", "partition"} for labels in received)
    assert {labels["hostname"] for labels in received} == {"vm"}  # w1@vm -> vm, as celery-exporter's get_hostname
    assert hostname_of("gen123@host.example") == "host.example" and hostname_of("solo") == "solo"


def test_histograms_match_prometheus_clients(scenario_events):
    from prometheus_client import Histogram

    events = task_events(scenario_events)
    exporter = CeleryExporter()
    run(exporter, events, batch=1)
    tracker = Tracker()
    for event in events:
        tracker.add(event)
    registry = CollectorRegistry()
    reference = Histogram("celery_task_runtime", "x", registry=registry, buckets=RUNTIME_BUCKETS)
    for record in tracker.task_records():
        if record["state"] in ("SUCCEEDED", "RECOVERED") and record["name"]:
            reference.observe(record["runtime"])
    ours = Counter()
    for (name, labels), value in samples(exporter).items():
        if name == "celery_task_runtime_bucket":
            ours[dict(labels)["le"]] += value
    theirs = {s.labels["le"]: s.value for f in text_string_to_metric_families(generate_latest(registry).decode())
              for s in f.samples if s.name == "celery_task_runtime_bucket"}  # fmt: skip
    assert dict(ours) == theirs
    assert QUEUE_WAIT_BUCKETS[-1] == float("inf") and len(QUEUE_WAIT_BUCKETS) == 15


def test_queue_wait_excludes_the_eta(scenario_ids, scenario_events):
    """The captured retries wait out a countdown (an ETA); the queue wait starts at the ETA."""
    retry = [e for e in task_events(scenario_events) if e.uuid == scenario_ids["recovered_retry"][0]]
    exporter = CeleryExporter()
    run(exporter, retry, batch=1)
    got = {dict(labels)["le"]: v for (name, labels), v in samples(exporter).items() if name == "celery_task_queue_wait_time_bucket"}
    assert got["+Inf"] == 3  # three attempts started
    assert got["0.1"] == 3  # each ~10 ms after max(sent, eta), not the 1 s countdown


def test_counts_survive_a_restart_and_move_with_their_partition(scenario_events):
    events = task_events(scenario_events)
    first = CeleryExporter()
    persisted = run(first, events)
    assert {partition_of_key(key) for key in persisted} == set(range(PARTITIONS))
    before = samples(first)

    restarted = CeleryExporter()  # a new process owning every partition: loads what was persisted
    for partition in range(PARTITIONS):
        restarted.own(partition, persisted.items())
    assert samples(restarted) == before

    a, b = CeleryExporter(), CeleryExporter()  # two workers sharing the partitions
    for partition in range(PARTITIONS):
        (a if partition % 2 else b).own(partition, persisted.items())
    merged = Counter(samples(a)) + Counter(samples(b))
    assert {k: v for k, v in merged.items() if v} == {k: v for k, v in before.items() if v}
    a.drop_tasks({1})
    assert not any(dict(labels).get("partition") == "1" for _, labels in samples(a))
    a.assign_tasks({1, 3}, [(k, json.dumps(v).encode()) for k, v in persisted.items()])  # as table bytes
    assert samples(a) == {k: v for k, v in before.items() if dict(k[1]).get("partition") in ("1", "3") or "partition" not in dict(k[1])}
    a.assign_tasks({3}, persisted.items())
    assert {dict(labels).get("partition") for _, labels in samples(a)} <= {"3", None}


def test_only_what_changed_is_persisted(scenario_events):
    events = task_events(scenario_events)
    exporter = CeleryExporter()
    everything = run(exporter, events)
    assert exporter.take_dirty() == []  # run() took them per batch
    again = run(exporter, events[:20], table={})  # the same events to a fresh table (a retired task's late duplicates)
    assert 0 < len(again) < len(everything)  # only the (partition, task name) pairs those events touched


def test_a_task_is_counted_once_its_name_is_known(scenario_ids, scenario_events):
    life = [e for e in task_events(scenario_events) if e.uuid == scenario_ids["succeed"][0]]
    started = [e for e in life if e.kind == "started"]
    exporter, table = CeleryExporter(), {}
    run(exporter, started, table=table)  # task-started first: no name yet
    assert _counter_totals(exporter) == {}
    run(exporter, life, table=table)  # the rest (and task-started again, a duplicate)
    assert totals(exporter)["celery_task_started_total"] == 1
    assert totals(exporter)["celery_task_received_total"] == 1


def test_workers_up_and_active():
    exporter = CeleryExporter(clock=lambda: 10_000.0)
    records = [
        {"cluster": "c", "hostname": "w1@host-a", "state": "HEARTBEAT", "active": 3},
        {"cluster": "c", "hostname": "w2@host-a", "state": "ONLINE", "active": 1},
        {"cluster": "c", "hostname": "w3@host-b", "state": "OFFLINE", "offline_reason": "heartbeat-expired", "seen_at": 9_896.0,
         "expires_at": 9_900.0, "active": 5},
        # left 10+ minutes ago by the monitor's clock; its own clock runs 2.5 h ahead (offline_at)
        {"cluster": "c", "hostname": "w4@host-c", "state": "OFFLINE", "offline_reason": "left", "offline_at": 9_800.0,
         "seen_at": 1_000.0, "active": 0},
    ]
    for partition, record in enumerate(records):
        exporter.worker(partition % 2, record)
    got = samples(exporter)
    assert got[("celery_worker_up", (("cluster", "c"), ("hostname", "host-a")))] == 1
    assert got[("celery_worker_tasks_active", (("cluster", "c"), ("hostname", "host-a")))] == 4
    assert got[("celery_worker_up", (("cluster", "c"), ("hostname", "host-b")))] == 0
    assert got[("celery_worker_tasks_active", (("cluster", "c"), ("hostname", "host-b")))] == 0
    assert not any(dict(labels).get("hostname") == "host-c" for _, labels in got)  # purged after 10 minutes
    exporter.keep_workers({1})  # partition 0 (w1, w3) moved to another streams worker
    got = samples(exporter)
    assert got[("celery_worker_tasks_active", (("cluster", "c"), ("hostname", "host-a")))] == 1
    assert not any(dict(labels).get("hostname") == "host-b" for _, labels in got)


def test_queue_gauges_from_fresh_samples_of_owned_partitions():
    from tests.sqlkit import queue_samples

    now = [960.0]  # the last samples are at 950
    exporter = CeleryExporter(clock=lambda: now[0])
    latest = {}
    for record in queue_samples("c", 900.0, minutes=1):
        latest[(record["queue"], record["role"])] = record
        exporter.queue_sample(hash(record["queue"]) % 2, record)
    got = samples(exporter)
    celery = (("cluster", "c"), ("queue_name", "celery"))
    priority = (("cluster", "c"), ("queue_name", "priority"))
    assert got[("celery_queue_length", celery)] == latest[("celery", "task")]["messages"]
    assert got[("celery_active_consumer_count", celery)] == 2 and got[("celery_active_worker_count", celery)] == 2
    assert got[("celery_active_process_count", celery)] == 8
    assert ("celery_active_consumer_count", priority) not in got  # Redis: unknown, not 0
    assert not any(dict(labels)["queue_name"].startswith("celery-monitor.bridge") for _, labels in got if labels)
    now[0] += 3_600  # the bridge stopped sampling
    assert not any(name == "celery_queue_length" for name, _ in samples(exporter))
    now[0] -= 3_600
    exporter.drop_queue_partitions(set())
    assert not any(name == "celery_queue_length" for name, _ in samples(exporter))


@pytest.mark.parametrize("bad", [{"c": [["celery_task_sent", "h", "q", "", 1]], "h": [["celery_task_runtime", "h", "q", [1, 2], 0.5]]}])
def test_a_stored_bucket_layout_that_changed_is_dropped(bad):
    exporter = CeleryExporter()
    exporter.own(0, [("0/c/t", bad), ("1/c/t", bad)])
    names = defaultdict(float)
    for (name, _), value in samples(exporter).items():
        names[name] += value
    assert names["celery_task_sent_total"] == 1 and "celery_task_runtime_count" not in names
