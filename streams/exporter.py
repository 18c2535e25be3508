"""celery-exporter's Prometheus metrics, from the engine's task and worker states (pure).

Dashboards and alerts written for celery-exporter (github.com/danihodovic/celery-exporter, its
celery-mixin) work on these names and labels. They come from state this pipeline already keeps
exactly, instead of from a second in-memory fold of the event stream:

    celery_task_{sent,received,started,succeeded,failed,rejected,revoked,retried}_total
        {name, hostname, queue_name[, exception for failed], cluster, partition}
    celery_task_runtime{...}            histogram, prometheus_client's default buckets
    celery_task_queue_wait_time{...}    histogram, celery-exporter's queue-wait buckets
    celery_worker_up{hostname, cluster} / celery_worker_tasks_active{hostname, cluster}
    celery_queue_length / celery_active_consumer_count / celery_active_worker_count /
    celery_active_process_count{queue_name, cluster}

Counting. A counter counts *distinct events* of its kind (task-rejected covers both requeue and
drop), the way celery-exporter counts each event it receives — but a duplicate delivery, which
that exporter counts again, counts nothing here: the delta of a task is the engine's per-kind
count of distinct events after a fold minus before it (``TaskContribution``). Events of a task
whose name is not known yet (e.g. task-started arriving before task-received) are counted when
the name arrives. Labels are taken at counting time: ``hostname`` is the host part of the node
name (celery-exporter's ``get_hostname``; the client's for task-sent, the worker's otherwise),
``queue_name`` the routing queue from task-sent, else ``celery`` (Celery's and celery-exporter's
default), ``exception`` the class name with Celery's wrappers unwrapped (the record's
``exception_type``), ``cluster`` the Celery cluster. As in celery-exporter, counting one kind
makes the other worker-side counters of the same labels exist at 0, so ``increase()`` sees
their first event.

Several streams workers, restarts, rebalances. Task counts are kept **per source partition**
(the partition of the task's events) and exported with a ``partition`` label by the worker that
owns that partition, from state that survives restarts: the app persists what changed
(``take_dirty``) in a table co-partitioned with the events and loads it when it (re)gains a
partition (``own``); a partition it loses stops being exported (``drop``). So each count is
exported by exactly one worker, sums across workers are the totals, and a series stays
monotonic wherever its partition goes:

* graceful restart or rebalance: the new owner loads exactly what the old one exported; the
  series continues (from another ``instance`` after a move: ``sum(increase(...))`` over
  instances counts it once; the events between the old owner's last scrape and the new owner's
  first are then not in any ``increase``, the raw totals still are);
* crash (kill -9): the task states and the counts are separate changelog writes, so the packs
  in flight (at-least-once: re-read after the restart) may be counted twice or not at all, and
  a partition may reload a little below what was exported — Prometheus reads that as a counter
  reset (one spike in ``rate``/``increase`` over the window that holds it);
* a task dropped from the engine's table after ``STREAMS_TASK_RETENTION`` that receives a very
  late duplicate is counted again (the engine no longer knows it).

Worker gauges come from the latest worker record derived per worker-events partition owned;
workers offline for more than ``WORKER_PURGE_SECONDS`` are no longer exported (celery-exporter
purges after 10 minutes too). Queue gauges come from the bridge's samples
(``celery.queue-lengths.v1``, role task) of the partitions this worker owns, and disappear when
a sample is older than ``STALE_SAMPLES`` x its interval.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from typing import Callable, Iterable, Iterator

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .engine.states import (
    FAILED_K,
    IGNORED_K,
    OFFLINE,
    RECEIVED_K,
    REQUEUED_K,
    RETRIED_K,
    REVOKED_K,
    SENT,
    STARTED_K,
    SUCCEEDED_K,
)

RUNTIME_BUCKETS = tuple(Histogram.DEFAULT_BUCKETS)  # celery-exporter's --buckets default
QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, math.inf)  # its DEFAULT_QUEUE_WAIT_BUCKETS
DEFAULT_QUEUE_NAME = "celery"  # celery-exporter's --default-queue-name (Celery's task_default_queue)
WORKER_PURGE_SECONDS = 600.0  # celery-exporter's --purge-offline-worker-metrics default
STALE_SAMPLES = 3  # a queue sample older than 3 intervals is no longer exported
MIN_STALE_SECONDS = 30.0

# event kind (streams.engine.states) -> counter (without _total), help text as celery-exporter's
COUNTERS = {
    SENT: ("celery_task_sent", "Sent when a task message is published."),
    RECEIVED_K: ("celery_task_received", "Sent when the worker receives a task."),
    STARTED_K: ("celery_task_started", "Sent just before the worker executes the task."),
    SUCCEEDED_K: ("celery_task_succeeded", "Sent if the task executed successfully."),
    FAILED_K: ("celery_task_failed", "Sent if the execution of the task failed."),
    REQUEUED_K: ("celery_task_rejected", "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue."),
    IGNORED_K: ("celery_task_rejected", "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue."),
    REVOKED_K: ("celery_task_revoked", "Sent if the task has been revoked."),
    RETRIED_K: ("celery_task_retried", "Sent if the task failed, but will be retried in the future."),
}  # fmt: skip
COUNTER_HELP = {metric: text for metric, text in COUNTERS.values()}
WORKER_SIDE = tuple(sorted({metric for kind, (metric, _) in COUNTERS.items() if kind != SENT}))  # made to exist at 0
RUNTIME, QUEUE_WAIT = "celery_task_runtime", "celery_task_queue_wait_time"
HISTOGRAMS = {
    RUNTIME: (RUNTIME_BUCKETS, "Histogram of task runtime measurements."),
    QUEUE_WAIT: (QUEUE_WAIT_BUCKETS, "Histogram of the time tasks spend waiting in the queue before being executed, excluding deliberate ETA/countdown delay."),
}  # fmt: skip
TASK_LABELS = ("name", "hostname", "queue_name", "cluster", "partition")
FAILED_LABELS = ("name", "hostname", "exception", "queue_name", "cluster", "partition")
WORKER_LABELS = ("hostname", "cluster")
QUEUE_LABELS = ("queue_name", "cluster")

# A task's contribution: distinct events per kind already counted (None: nothing counted yet).
TaskContribution = dict[str, int] | None
# Counter/histogram key inside a partition: (metric, cluster, name, hostname, queue_name, exception)
_Key = tuple[str, str, str, str, str, str]


def hostname_of(node: str | None) -> str:
    """'worker1@host.example' -> 'host.example' (celery.utils.nodesplit, as celery-exporter labels)."""
    if not node:
        return ""
    return node.split("@", 1)[1] if "@" in node else node


def contribution(state: dict | None) -> TaskContribution:
    """What a task's engine state has contributed to the counters: its distinct events per kind,
    once its name is known. Call it on the state *before* folding (the fold updates in place).

    The engine keeps one entry per distinct event, its kind first (``state["ev"]``), and the
    task name in the ``meta`` register (engine.states.MERGE_RULES); a unit test runs this on the
    real engine so a change of that layout fails loudly."""
    if state is None:
        return None
    meta = state["reg"].get("meta")
    if meta is None or not meta[1][0]:
        return None
    old = state.get("old")  # entries the engine summarised (a task with very many attempts)
    counts: dict[str, int] = dict(old["kinds"]) if old else {}
    for entry in state["ev"]:
        kind = entry[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _eta_seconds(eta: str | None) -> float | None:
    if not eta:
        return None
    try:
        when = dt.datetime.fromisoformat(eta)
    except ValueError:
        return None
    if when.tzinfo is None:  # Celery sends aware ETAs; a naive one is taken as UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


class _Partition:
    """The counts of one source partition: what is persisted and exported under its label."""

    __slots__ = ("counters", "histograms", "dirty", "zeroed")

    def __init__(self) -> None:
        self.counters: dict[_Key, float] = {}
        self.histograms: dict[_Key, list] = {}  # key -> [per-bucket counts (not cumulative), sum]
        self.dirty: set[tuple[str, str]] = set()  # (cluster, name) changed since take_dirty
        self.zeroed: set[tuple] = set()  # (cluster, name, hostname, queue) whose worker-side series exist

    def group(self, cluster: str, name: str) -> dict:
        """The persisted value of one (cluster, task name): JSON-able."""
        counters = [[k[0], k[3], k[4], k[5], v] for k, v in self.counters.items() if k[1] == cluster and k[2] == name]
        histograms = [[k[0], k[3], k[4], h[0], h[1]] for k, h in self.histograms.items() if k[1] == cluster and k[2] == name]
        return {"c": counters, "h": histograms}

    def load(self, cluster: str, name: str, value: dict) -> None:
        for metric, hostname, queue, exception, count in value.get("c", ()):
            self.counters[(metric, cluster, name, hostname, queue, exception)] = count
        for metric, hostname, queue, counts, total in value.get("h", ()):
            buckets = HISTOGRAMS.get(metric, ((),))[0]
            if len(counts) == len(buckets):  # a bucket layout that changed since is dropped
                self.histograms[(metric, cluster, name, hostname, queue, "")] = [list(counts), total]


class CeleryExporter(Collector):
    """celery-exporter's metrics for the partitions this streams worker owns.

    Feed it from the agents and timers (all calls are cheap and thread-safe; Prometheus scrapes
    ``collect`` from the HTTP thread)::

        before = contribution(state)                       # per changed task, before fold_task
        exporter.task_changed(partition, before, state, record)   # after derive_task
        for key, value in exporter.take_dirty(): table[key] = value   # per batch, key's partition
        exporter.assign_tasks(owned, table.items(), reload)  # at a new generation (reload) / periodically
        exporter.drop_tasks(revoked)                        # at once on revocation
        exporter.worker(partition, worker_record)           # every worker record derived
        exporter.keep_workers(owned)                        # the worker-events partitions owned
        exporter.queue_sample(partition, record)            # a celery.queue-lengths.v1 record
        exporter.drop_queue_partitions(owned)               # the queue partitions owned
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._partitions: dict[int, _Partition] = {}
        self._workers: dict[int, dict[str, dict]] = {}  # partition -> worker key -> latest record
        self._samples: dict[int, dict[tuple[str, str], dict]] = defaultdict(dict)

    # -- tasks -----------------------------------------------------------------------------------
    def task_changed(self, partition: int, before: TaskContribution, state: dict, record: dict) -> None:
        """Count what a fold added to one task: the distinct events of each kind it did not have.

        ``before``: ``contribution(state)`` taken before folding; ``state``/``record``: the task
        after the fold and its derived record. Nothing is counted while the name is unknown."""
        after = contribution(state)
        if after is None:
            return
        before = before or {}
        delta = {kind: n - before.get(kind, 0) for kind, n in after.items() if n > before.get(kind, 0) and kind in COUNTERS}
        if not delta:
            return
        cluster, name = record.get("cluster") or "", record["name"]
        queue = record.get("queue") or DEFAULT_QUEUE_NAME
        worker = hostname_of(record.get("worker"))
        with self._lock:
            part = self._partitions.get(partition)
            if part is None:
                part = self._partitions[partition] = _Partition()
            counters = part.counters
            for kind, count in delta.items():
                metric = COUNTERS[kind][0]
                if kind == SENT:
                    key = (metric, cluster, name, hostname_of(record.get("client")), queue, "")
                elif kind == FAILED_K:
                    key = (metric, cluster, name, worker, queue, record.get("exception_type") or "UnknownException")
                else:
                    key = (metric, cluster, name, worker, queue, "")
                counters[key] = counters.get(key, 0) + count
            labels = (cluster, name, worker, queue)
            if labels not in part.zeroed and delta.keys() - {SENT}:
                part.zeroed.add(labels)
                for metric in WORKER_SIDE:  # celery-exporter's inc(0): the series exist before their first event
                    counters.setdefault((metric, cluster, name, worker, queue, ""), 0)
            runtime = record.get("runtime")
            if delta.get(SUCCEEDED_K) and isinstance(runtime, (int, float)):
                self._observe(part, (RUNTIME, cluster, name, worker, queue, ""), float(runtime), delta[SUCCEEDED_K])
            queued_at, started_at = record.get("queued_at"), record.get("started_at")
            if delta.get(STARTED_K) and queued_at is not None and started_at is not None:
                eta = _eta_seconds(record.get("eta"))
                wait = max(0.0, started_at - max(queued_at, eta if eta is not None else queued_at))
                self._observe(part, (QUEUE_WAIT, cluster, name, worker, queue, ""), wait, 1)
            part.dirty.add((cluster, name))

    @staticmethod
    def _observe(part: _Partition, key: _Key, value: float, times: int) -> None:
        buckets = HISTOGRAMS[key[0]][0]
        histogram = part.histograms.get(key)
        if histogram is None:
            histogram = part.histograms[key] = [[0] * len(buckets), 0.0]
        histogram[0][bisect_left(buckets, value)] += times  # le: the first bound >= value
        histogram[1] += value * times

    def take_dirty(self) -> list[tuple[str, dict]]:
        """(table key, value) of every (partition, cluster, task name) changed since the last call.

        Persist each under its key in a table whose changelog partition is the key's partition
        (``partition_of_key``); ``own`` reads them back."""
        out = []
        with self._lock:
            for partition, part in self._partitions.items():
                for cluster, name in part.dirty:
                    out.append((f"{partition}/{cluster}/{name}", part.group(cluster, name)))
                part.dirty.clear()
        return out

    def own(self, partition: int, stored: Iterable[tuple[str, dict | bytes]]) -> None:
        """This worker (re)gained ``partition``: its counts are what was persisted (``stored``:
        the table's (key, value) items, values as ``take_dirty`` gave them or their JSON bytes;
        other partitions' keys are ignored)."""
        part = _Partition()
        prefix = f"{partition}/"
        for key, value in stored:
            if key.startswith(prefix) and value:
                _, cluster, name = key.split("/", 2)
                part.load(cluster, name, json.loads(value) if isinstance(value, (bytes, bytearray, str)) else value)
        with self._lock:
            self._partitions[partition] = part

    def assign_tasks(self, partitions: set[int], stored: Iterable[tuple[str, dict | bytes]], reload: bool = False) -> None:
        """Export exactly these task partitions: load the ones not loaded yet (all of them with
        ``reload``, at a new assignment generation: another worker may have counted meanwhile),
        drop the others."""
        with self._lock:
            owned = set(self._partitions)
        load = partitions if reload else partitions - owned
        if load:
            rows = [(key, value) for key, value in stored if partition_of_key(key) in load]
            for partition in load:
                self.own(partition, rows)
        self.drop_tasks(owned - partitions)

    def drop_tasks(self, partitions: Iterable[int]) -> None:
        """This worker lost these partitions: their series are exported by the new owner."""
        with self._lock:
            for partition in partitions:
                self._partitions.pop(partition, None)

    # -- workers and queues ------------------------------------------------------------------------
    def worker(self, partition: int, record: dict) -> None:
        """The latest record of a Celery worker (a worker-events partition's key)."""
        with self._lock:
            self._workers.setdefault(partition, {})[f"{record.get('cluster') or ''}/{record['hostname']}"] = record

    def keep_workers(self, partitions: set[int]) -> None:
        """Only the worker-events partitions this worker owns stay exported."""
        with self._lock:
            for partition in list(self._workers):
                if partition not in partitions:
                    del self._workers[partition]

    def queue_sample(self, partition: int, record: dict) -> None:
        if record.get("role", "task") != "task":
            return  # the bridge's own queue is not a Celery queue (bridge_queue_messages has it)
        with self._lock:
            self._samples[partition][(record.get("cluster") or "", record["queue"])] = record

    def drop_queue_partitions(self, keep: set[int]) -> None:
        with self._lock:
            for partition in list(self._samples):
                if partition not in keep:
                    del self._samples[partition]

    # -- Prometheus ------------------------------------------------------------------------------
    def describe(self) -> Iterator:
        return iter(())  # families are built at collect time; no duplicate-name check needed

    def collect(self) -> Iterator:
        with self._lock:
            partitions = [(p, dict(part.counters), {k: (list(h[0]), h[1]) for k, h in part.histograms.items()})
                          for p, part in self._partitions.items()]  # fmt: skip
            workers = [record for by_key in self._workers.values() for record in by_key.values()]
            samples = [s for by_queue in self._samples.values() for s in by_queue.values()]
        yield from self._task_families(partitions)
        yield from self._worker_families(workers, self.clock())
        yield from self._queue_families(samples)

    def _task_families(self, partitions) -> Iterator:
        counters = {
            metric: CounterMetricFamily(metric, COUNTER_HELP[metric], labels=FAILED_LABELS if metric == "celery_task_failed" else TASK_LABELS)
            for metric in COUNTER_HELP
        }  # fmt: skip
        histograms = {metric: HistogramMetricFamily(metric, text, labels=TASK_LABELS) for metric, (_, text) in HISTOGRAMS.items()}
        for partition, part_counters, part_histograms in partitions:
            p = str(partition)
            for (metric, cluster, name, hostname, queue, exception), value in part_counters.items():
                if metric == "celery_task_failed":
                    counters[metric].add_metric([name, hostname, exception, queue, cluster, p], value)
                else:
                    counters[metric].add_metric([name, hostname, queue, cluster, p], value)
            for (metric, cluster, name, hostname, queue, _), (counts, total) in part_histograms.items():
                bounds = HISTOGRAMS[metric][0]
                cumulative, running = [], 0
                for bound, count in zip(bounds, counts):
                    running += count
                    cumulative.append((floatToGoString(bound), running))  # how prometheus_client writes "le"
                histograms[metric].add_metric([name, hostname, queue, cluster, p], cumulative, total)
        yield from counters.values()
        yield from histograms.values()

    @staticmethod
    def _worker_families(workers: list[dict], now: float) -> Iterator:
        up = GaugeMetricFamily("celery_worker_up", "Indicates if a worker has recently sent a heartbeat.", labels=WORKER_LABELS)
        active = GaugeMetricFamily("celery_worker_tasks_active", "The number of tasks the worker is currently processing", labels=WORKER_LABELS)
        by_host: dict[tuple[str, str], list[int]] = {}
        for record in workers:  # several nodes on one host share celery-exporter's hostname label
            alive = record["state"] != OFFLINE
            gone_at = record.get("seen_at") or now  # the monitor's clock (offline_at is the worker's)
            if not alive and now - gone_at > WORKER_PURGE_SECONDS:
                continue  # long gone: no longer exported (celery-exporter purges too)
            entry = by_host.setdefault((hostname_of(record["hostname"]), record.get("cluster") or ""), [0, 0])
            entry[0] = max(entry[0], 1 if alive else 0)
            entry[1] += (record.get("active") or 0) if alive else 0
        for (hostname, cluster), (is_up, tasks) in sorted(by_host.items()):
            up.add_metric([hostname, cluster], is_up)
            active.add_metric([hostname, cluster], tasks)
        yield up
        yield active

    def _queue_families(self, samples: list[dict]) -> Iterator:
        families = {
            "messages": GaugeMetricFamily("celery_queue_length", "The number of message in broker queue.", labels=QUEUE_LABELS),
            "consumers": GaugeMetricFamily("celery_active_consumer_count", "The number of active consumer in broker queue.", labels=QUEUE_LABELS),
            "workers": GaugeMetricFamily("celery_active_worker_count", "The number of active workers in broker queue.", labels=QUEUE_LABELS),
            "processes": GaugeMetricFamily("celery_active_process_count", "The number of active processes in broker queue.", labels=QUEUE_LABELS),
        }  # fmt: skip
        now = self.clock()
        for sample in sorted(samples, key=lambda s: (s.get("cluster") or "", s["queue"])):
            if now - sample["sampled_at"] > max(STALE_SAMPLES * (sample.get("interval") or 0), MIN_STALE_SECONDS):
                continue  # the bridge stopped sampling it: no value is better than an old one
            labels = [sample["queue"], sample.get("cluster") or ""]
            for field, family in families.items():
                value = sample.get(field)
                if value is not None:  # consumers: AMQP only; workers/processes: with discovery
                    family.add_metric(labels, value)
        yield from families.values()


def partition_of_key(key: str) -> int:
    """The source partition a ``take_dirty`` key belongs to (its changelog partition)."""
    return int(key.split("/", 1)[0])
