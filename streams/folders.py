"""One pack in, its state changes and records out: the work of the streams agents, without Faust.

A pack (schemas/pack.v2.json) holds events of one partition, so every key it touches lives in
that partition's table and changelog: the agents hand each pack to a folder with the table
(``fetch(key)`` / ``put(key, value, partition, receipt)``; values are the engine states as JSON
bytes) and an ``Outbox``-like sender. Tests drive the folders with a dict-backed table and a list.

Table values are bytes, not Python objects: a million tracked tasks as objects are tens of
millions of objects for Python's cyclic GC to walk (and three times the memory), while bytes
are one untracked object each. A pack loads each key it touches once and writes it once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Iterable, Protocol

import orjson

from . import records
from .engine.codec import exact
from .engine import (
    Invalid,
    OtherEvent,
    Sighting,
    TaskEvent,
    Tick,
    WorkerEvent,
    derive_task,
    derive_worker,
    fold_sighting,
    fold_task,
    fold_worker,
    judge_worker,
    mark_worker_lost,
    retirable,
    task_seen_at,
    task_status,
    worker_key,
)
from .engine.fold import events_count
from .engine.alerts import ALERT_VERSION, FailureBursts, newly_failed, said, task_alerts, worker_alerts
from .engine.states import FINAL_STATES, OFFLINE, ORPHANABLE_STATES
from .exporter import contribution

log = logging.getLogger("streams.folders")

# A table value or output record larger than this is not written: Kafka's default record limit is
# 1 MB (the producer's message.max.bytes, the broker's max.message.bytes), and one pack that
# cannot be written would stop its partition for good (a poison pack). The events that made it
# go to the dead-letter topic instead (reason "too-large"); with bounded task states
# (engine.states.TASK_ENTRIES_MAX, 64 KiB per text field) this does not happen to Celery's events.
MAX_VALUE_BYTES = 900_000
POISON_EXCEPTION, POISON_TOO_LARGE = "exception", "too-large"


class Sender(Protocol):
    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             receipt: Any = None, on_delivery: Callable | None = None) -> None: ...  # fmt: skip


def dumps(state: dict) -> bytes:
    # exact(): orjson's bytes keep its growth buffer (~4 kB each); a million kept states held
    # 4.3 GB instead of ~0.7 GB (bench-streams --rss-tasks).
    return exact(orjson.dumps(state))


def loads(raw: bytes | None) -> dict | None:
    return None if raw is None else orjson.loads(raw)


class Published(dict):
    """events_count of the last record this worker published per task, for the most recent ones.

    A duplicate event normally publishes nothing; one for a task not in here (a restart, a
    partition taken over, or forgotten) publishes its record again -- same record, harmless.
    After a kill -9 the table (changelog) can hold a pack's states while its output records were
    lost: the re-read pack's events are then duplicates, and this is what republishes them.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def record(self, key: str, events_count: int) -> None:
        self.pop(key, None)
        self[key] = events_count
        if len(self) > self.capacity:
            del self[next(iter(self))]  # the least recently published


class Topics:
    """Output topic names (from Settings) and the partition count of the internal broadcast."""

    def __init__(self, settings, app_id: str):
        self.task_states = settings.topic_task_states
        self.worker_states = settings.topic_worker_states
        self.alerts = settings.topic_alerts
        self.dead_letters = settings.topic_dead_letters
        self.failures = f"{app_id}-task-failures"
        self.losses = f"{app_id}-worker-losses"
        self.partitions = settings.topic_partitions


class Folded:
    """What one source record caused: alerts and worker-loss notices to send first (at-least-once:
    a crash after them re-reads the record and raises them again), then ``write()`` for the
    table writes and records, which make the change durable."""

    __slots__ = ("alerts", "notices", "write")

    def __init__(self, alerts: list[dict], notices: list[dict], write: Callable[[], None]):
        self.alerts = alerts
        self.notices = notices
        self.write = write


class PackContext:
    """Where a pack came from (for dead letters and logs) and its receipt."""

    __slots__ = ("topic", "partition", "offset", "receipt")

    def __init__(self, topic: str, partition: int, offset: int, receipt: Any):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.receipt = receipt

    def source(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class Outputs:
    """Encodes and sends what a pack caused; alerts first when asked (at-least-once alerts)."""

    def __init__(self, out: Sender, topics: Topics, metrics=None):
        self.out = out
        self.topics = topics
        self.metrics = metrics

    def dead_letter(self, item, ctx: PackContext, expected: str) -> None:
        invalid = item if isinstance(item, Invalid) else Invalid(f"{type(item).__name__} on the {expected}-events topic", getattr(item, "body", None))
        if self.metrics:
            self.metrics.dead_letters.labels(ctx.topic).inc()
        self.out.send(self.topics.dead_letters, records.dead_letter(invalid, ctx.source(), "streams"), receipt=ctx.receipt)

    def poison(self, item, ctx: PackContext, reason: str, kind: str) -> None:
        """A valid event whose fold failed (``kind`` exception) or whose record would be too large
        to write (``too-large``): to the dead-letter topic with the reason, counted; the pack and
        its partition move on."""
        log.error("%s[%d]@%d: event dead-lettered (%s): %s", ctx.topic, ctx.partition, ctx.offset, kind, reason)
        if self.metrics:
            self.metrics.poison.labels(ctx.topic, kind).inc()
        raw = getattr(item, "body", None)
        if raw is None:  # a sign of life (pack 'seen' entry): what it said
            raw = {k: getattr(item, k, None) for k in ("cluster", "hostname", "received", "timestamp", "events", "pid")}
        self.dead_letter(Invalid(reason, raw), ctx, "task")
        self.alert(poison_alert(item, ctx, reason, kind), ctx.receipt)

    def alert(self, alert: dict, receipt) -> None:
        if self.metrics:
            self.metrics.alerts.labels(alert["alert"]).inc()
        self.out.send(self.topics.alerts, records.encode(alert), alert["key"].encode(), receipt=receipt)


def poison_alert(item, ctx: PackContext, reason: str, kind: str) -> dict:
    """``event-dead-lettered`` (schemas/alert.v1.json): a valid event (a TaskEvent, a WorkerEvent or
    a pack's sign of life) the engine could not fold or write; key = the task's uuid, else
    cluster/hostname. Raised again if its pack is read again (at least once, like its dead letter)."""
    text = lambda v: v if isinstance(v, str) and v else None  # noqa: E731
    cluster, uuid, hostname = text(getattr(item, "cluster", None)), text(getattr(item, "uuid", None)), text(getattr(item, "hostname", None))
    body = getattr(item, "body", None)
    body = body if isinstance(body, dict) else {}
    at = getattr(item, "timestamp", None)
    return {"v": ALERT_VERSION, "alert": "event-dead-lettered", "cluster": cluster, "key": uuid or f"{cluster or ''}/{hostname or ''}",
            "at": float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None,
            "name": text(body.get("name")), "hostname": hostname, "event_type": text(getattr(item, "type", None)),
            "cause": kind, "detail": reason[:1000], "topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset}  # fmt: skip


# -- tasks ------------------------------------------------------------------------------------
class TaskFolder:
    """Task packs and worker-loss notices of the partitions this worker owns.

    Besides the table it keeps, per partition and in memory, which RECEIVED/STARTED tasks each
    worker holds (the orphan index) and which finished tasks wait for retention; both are
    rebuilt from the table when a partition is (re)assigned (:meth:`assigned`).
    """

    def __init__(self, table, losses, outputs: Outputs, metrics=None, published_capacity: int = 1_000_000,
                 exporter=None, counts=None, slow_runtime: float = 0.0):  # fmt: skip
        self.table = table
        self.slow_runtime = slow_runtime  # task-slow alert threshold, seconds (0 = off)
        self.losses = losses  # worker key -> lost_at (JSON bytes), written per partition
        self.outputs = outputs
        self.metrics = metrics
        self.exporter = exporter  # streams.exporter.CeleryExporter: counts what each pack added
        self.counts = counts  # its table: key "partition/cluster/name" -> JSON bytes
        self.published = Published(published_capacity)
        self.holding: dict[int, dict[str, set[str]]] = {}  # partition -> worker key -> task keys
        self.finished: dict[int, deque] = {}  # partition -> (finished at, task key), oldest first

    # which tasks of a partition each worker holds, and which may retire
    def _hold(self, partition: int, key: str, record: dict, previous: list | None) -> None:
        holding = self.holding.setdefault(partition, {})
        if previous and previous[0] in ORPHANABLE_STATES and previous[2]:
            held = holding.get(worker_key(record["cluster"], previous[2]))
            if held is not None:
                held.discard(key)
        if record["state"] in ORPHANABLE_STATES and record["worker"]:
            holding.setdefault(worker_key(record["cluster"], record["worker"]), set()).add(key)

    def assigned(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild the orphan index and retention queue of a partition from its table rows."""
        return self.assigned_states(partition, _states_of(partition, items))

    def assigned_states(self, partition: int, states: Iterable[tuple[str, dict]]) -> int:
        """The same from the partition's decoded states (``index_partitions`` decodes once)."""
        holding = self.holding[partition] = {}
        finished = []
        for key, state in states:
            status, _, worker = state.get("said") or (None, None, None)
            if status in ORPHANABLE_STATES and worker:
                holding.setdefault(worker_key(state["cluster"], worker), set()).add(key)
            elif status in FINAL_STATES:
                finished.append((state.get("folded_at") or 0.0, key))
        finished.sort()
        self.finished[partition] = deque(finished)
        return len(finished) + sum(len(v) for v in holding.values())

    def pack(self, items: Iterable, ctx: PackContext, now: float | None = None) -> Folded:
        """Fold one pack's items. Dead letters go out at once into ``ctx.receipt``; table writes,
        state records and failures when the caller runs ``write()``."""
        table = self.table
        published = self.published
        states: dict[str, dict] = {}
        counted: dict[str, dict | None] = {}  # key -> what the task had contributed to the exporter
        folding: dict[str, dict] = {}  # key -> the state this pack folds into (changed or not)
        by_key: dict[str, list] = {}  # key -> this pack's events of it (dead letters if it cannot be written)
        events = 0
        for item in items:
            cls = item.__class__
            if cls is TaskEvent:
                events += 1
                if item.kind == "other" and self.metrics:  # a task-* type the rules do not know: kept, counted
                    self.metrics.other_events.labels(_bounded_type(item.type)).inc()
                key = f"{item.cluster or ''}/{item.uuid}"
                try:
                    state = folding.get(key)
                    if state is None:
                        state = loads(table.fetch(key))
                        if key not in counted:
                            counted[key] = contribution(state)
                    state, is_new = fold_task(state, item)
                except Exception as exc:  # noqa: BLE001 - one event must not stop its partition (a poison pack)
                    reason = f"folding the event failed: {type(exc).__name__}: {exc}"
                    self.outputs.poison(item, ctx, reason, POISON_EXCEPTION)
                    try:
                        state = self._refold(key, by_key.get(key, ()))  # the fold may have changed the state half-way
                    except Exception:  # noqa: BLE001 - the stored state itself cannot be folded: leave it as stored
                        for earlier in by_key.pop(key, ()):
                            self.outputs.poison(earlier, ctx, reason, POISON_EXCEPTION)
                        states.pop(key, None)
                        folding.pop(key, None)
                        continue
                    folding[key] = state
                    if by_key.get(key):
                        states[key] = state
                    else:
                        states.pop(key, None)
                    continue
                folding[key] = state
                by_key.setdefault(key, []).append(item)
                if is_new or published.get(key) != events_count(state):
                    states[key] = state
            elif cls is Invalid:
                self.outputs.dead_letter(item, ctx, "task")
            elif cls is Tick or cls is Sighting:
                continue  # liveness is judged on the worker-events topic
            else:
                self.outputs.dead_letter(item, ctx, "task")
        if self.metrics:
            self.metrics.events_in.labels(ctx.topic).inc(events)
            self.metrics.events_merged.labels("tasks").inc(len(states))
        return self._derive(states, ctx, now or time.time(), counted, by_key)

    def _refold(self, key: str, items: Iterable) -> dict | None:
        """The stored state of ``key`` with ``items`` folded again (they folded before)."""
        state = loads(self.table.fetch(key))
        for item in items:
            state, _ = fold_task(state, item)
        return state

    def _derive(self, states: dict[str, dict], ctx: PackContext, now: float, counted: dict | None = None,
                by_key: dict[str, list] | None = None) -> Folded:  # fmt: skip
        alerts = []
        derived = {}
        for key, state in list(states.items()):
            try:
                record = derive_task(state)
                if record["state"] in ORPHANABLE_STATES and record["worker"] and record["orphaned_at"] is None:
                    lost = self.losses.fetch(worker_key(record["cluster"], record["worker"]))
                    if lost is not None and mark_worker_lost(state, record["worker"], orjson.loads(lost)):
                        record = derive_task(state)  # a task received from a worker already lost
            except Exception as exc:  # noqa: BLE001 - the task's events of this pack go to the dead letters, the rest goes on
                self._poisoned(key, states, by_key, ctx, f"deriving the task's record failed: {type(exc).__name__}: {exc}", POISON_EXCEPTION)
                continue
            before = state.get("said")
            alerts.extend(task_alerts(before, record, self.slow_runtime))
            derived[key] = record
        return Folded(alerts, [], lambda: self._write(states, derived, ctx, now, counted, by_key))

    def _poisoned(self, key: str, states: dict, by_key: dict | None, ctx: PackContext, reason: str, kind: str) -> None:
        """Leave ``key`` as it is stored; this pack's events of it go to the dead letters."""
        states.pop(key, None)
        items = (by_key or {}).get(key) or ()
        if not items:
            log.error("%s[%d]@%d: task %s not updated (%s): %s", ctx.topic, ctx.partition, ctx.offset, key, kind, reason)
        for item in items:
            self.outputs.poison(item, ctx, reason, kind)

    def _write(self, states: dict[str, dict], derived: dict[str, dict], ctx: PackContext, now: float, counted: dict | None = None,
               by_key: dict[str, list] | None = None) -> None:  # fmt: skip
        receipt = ctx.receipt
        topics = self.outputs.topics
        out = self.outputs.out
        for key, state in list(states.items()):
            record = derived[key]
            before = state.get("said")
            try:
                state["said"] = [*said(record), record["worker"]]
                state["folded_at"] = now  # retention counts from here too (engine.retirable)
                state["p"] = ctx.partition
                value, encoded = dumps(state), records.encode(record)
            except Exception as exc:  # noqa: BLE001
                self._poisoned(key, states, by_key, ctx, f"encoding the task failed: {type(exc).__name__}: {exc}", POISON_EXCEPTION)
                continue
            if len(value) > MAX_VALUE_BYTES or len(encoded) > MAX_VALUE_BYTES:
                self._poisoned(key, states, by_key, ctx, f"the task's state ({len(value):,} bytes) or record ({len(encoded):,} bytes) "
                               f"would pass {MAX_VALUE_BYTES:,} bytes (Kafka's record limit)", POISON_TOO_LARGE)  # fmt: skip
                continue
            if newly_failed(before[0] if before else None, record) and record.get("name"):
                failure = {"cluster": record["cluster"], "name": record["name"],
                           "at": record.get("seen_at") or record.get("failed_at") or record["last_seen_at"],  # monitor clock
                           "uuid": record["uuid"], "exception_type": record.get("exception_type"),
                           "exception": record.get("exception")}  # fmt: skip
                out.send(topics.failures, orjson.dumps(failure), f"{record['cluster']}/{record['name']}".encode(), receipt=receipt)
            self._hold(ctx.partition, key, record, before)
            if record["state"] in FINAL_STATES and (before is None or before[0] not in FINAL_STATES):
                self.finished.setdefault(ctx.partition, deque()).append((now, key))
            self.table.put(key, value, ctx.partition, receipt)
            out.send(topics.task_states, encoded, state["uuid"].encode(), receipt=receipt)
            self.published.record(key, record["events_count"])
            if self.exporter is not None and counted is not None:  # events were folded (not a loss notice)
                self.exporter.task_changed(ctx.partition, counted.get(key), state, record)
        if self.exporter is not None and self.counts is not None:
            for count_key, value in self.exporter.take_dirty():  # in this partition: the pack's
                self.counts.put(count_key, dumps(value), ctx.partition, receipt)
        if self.metrics:
            self.metrics.records_out.labels(topics.task_states).inc(len(states))

    def worker_lost(self, notice: dict, ctx: PackContext) -> Folded:
        """A worker of this partition's tasks was lost: tag the tasks it held as orphaned."""
        cluster, hostname, lost_at = notice["cluster"], notice["hostname"], float(notice["lost_at"])
        wkey = worker_key(cluster, hostname)
        previous = self.losses.fetch(wkey)
        if previous is None or orjson.loads(previous) < lost_at:
            self.losses.put(wkey, orjson.dumps(lost_at), ctx.partition, ctx.receipt)
        states = {}
        for key in list(self.holding.get(ctx.partition, {}).get(wkey, ())):
            state = loads(self.table.fetch(key))
            if state is not None and mark_worker_lost(state, hostname, lost_at):
                states[key] = state
        return self._derive(states, ctx, time.time())

    def retire(self, now: float, retention: float, partition: int) -> list[str]:
        """Finished tasks of a partition left alone for ``retention`` seconds (delete them)."""
        queue = self.finished.get(partition)
        done = []
        while queue and queue[0][0] < now - retention:
            _, key = queue.popleft()
            state = loads(self.table.fetch(key))
            if state is None:
                continue
            if retirable(state, now, retention):
                done.append(key)
                self.published.pop(key, None)
            elif task_status(state) in FINAL_STATES:  # written again since (a late event, a re-read pack)
                queue.append((max(task_seen_at(state) or now, state.get("folded_at") or now), key))
        return done


def _states_of(partition: int, items: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, dict]]:
    out = []
    for key, raw in items:
        state = loads(raw) if raw is not None else None
        if state is not None and state.get("p") == partition:
            out.append((key, state))
    return out


def index_partitions(folder, partitions: Iterable[int], items: Iterable[tuple[str, bytes | None]]) -> int:
    """Rebuild a folder's indexes of every owned partition, decoding each table row once (not
    once per partition: a table of 1M tasks over 8 partitions was 8M decodes per rebalance)."""
    groups: dict[int, list[tuple[str, dict]]] = {p: [] for p in partitions}
    for key, raw in items:
        state = loads(raw) if raw is not None else None
        if state is not None:
            group = groups.get(state.get("p"))
            if group is not None:
                group.append((key, state))
    return sum(folder.assigned_states(p, states) for p, states in groups.items())


# -- workers ----------------------------------------------------------------------------------
class WorkerFolder:
    """Worker packs of the partitions this worker owns: events, signs of life and ticks.

    Liveness is judged against the partition's watermark per cluster -- the greatest
    ``read_until`` of the packs read (the bridge had read everything up to then) -- never
    against this host's clock: a backlog or a stopped bridge holds the watermark back instead
    of killing every worker.
    """

    def __init__(self, table, outputs: Outputs, expiry_factor: float, drift_threshold: float, metrics=None, exporter=None):
        self.table = table
        self.outputs = outputs
        self.expiry = expiry_factor
        self.drift = drift_threshold
        self.metrics = metrics
        self.exporter = exporter  # streams.exporter.CeleryExporter: worker up / active gauges
        self.watermarks: dict[tuple[int, Any], float] = {}  # (partition, cluster) -> read_until
        self.alive: dict[int, dict[str, tuple[Any, float]]] = {}  # partition -> key -> (cluster, expires_at)
        self.published: dict[str, tuple] = {}  # key -> what the last published record said

    def assigned(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild the liveness index of a partition from its table rows."""
        return self.assigned_states(partition, _states_of(partition, items))

    def assigned_states(self, partition: int, states: Iterable[tuple[str, dict]]) -> int:
        alive = self.alive[partition] = {}
        for key, state in states:
            record = derive_worker(state, None, self.expiry)
            if self.exporter is not None:
                self.exporter.worker(partition, record)  # exported from the (re)assignment on
            if record["state"] != OFFLINE and record["expires_at"] is not None:
                alive[key] = (state["cluster"], record["expires_at"])
        return len(alive)

    def pack(self, items: Iterable, ctx: PackContext) -> Folded:
        """Fold one pack and judge the partition's workers at its watermark."""
        partition = ctx.partition
        states: dict[str, dict] = {}
        before: dict[str, dict | None] = {}
        ticked: set = set()
        events = 0
        marks = dict(self.watermarks)  # as judged before this pack: what alerts compare with

        loaded: dict[str, dict | None] = {}  # key -> the stored state, read once per pack

        def touch(key: str, cluster) -> dict | None:
            state = states.get(key)
            if state is None:
                if key in loaded:
                    return loaded[key]  # read already, unchanged so far by this pack
                state = loaded[key] = loads(self.table.fetch(key))
                at = marks.get((partition, cluster))
                before[key] = derive_worker(state, at, self.expiry) if state is not None else None
            return state

        for item in items:
            cls = item.__class__
            if cls is WorkerEvent or cls is Sighting:
                events += cls is WorkerEvent
                key = item.key
                try:
                    fold = fold_worker if cls is WorkerEvent else fold_sighting
                    state, changed = fold(touch(key, item.cluster), item)
                except Exception as exc:  # noqa: BLE001 - one event must not stop its partition (a poison pack)
                    self.outputs.poison(item, ctx, f"folding the event failed: {type(exc).__name__}: {exc}", POISON_EXCEPTION)
                    continue
                if changed:
                    states[key] = state
            elif cls is Tick:
                mark = (partition, item.cluster)
                if item.read_until > self.watermarks.get(mark, float("-inf")):
                    self.watermarks[mark] = item.read_until
                    ticked.add(item.cluster)
            elif cls is OtherEvent:
                events += 1
                if self.metrics:
                    self.metrics.other_events.labels(_bounded_type(item.type)).inc()
            else:
                self.outputs.dead_letter(item, ctx, "worker")
        if self.metrics:
            self.metrics.events_in.labels(ctx.topic).inc(events)
            self.metrics.events_merged.labels("workers").inc(len(states))

        # Judge every worker of the partition whose cluster's watermark moved, and the changed ones.
        alive = self.alive.setdefault(partition, {})
        for key, (cluster, expires_at) in list(alive.items()):
            at = self.watermarks.get((partition, cluster))
            if cluster in ticked and at is not None and at > expires_at and key not in states:
                state = touch(key, cluster)
                if state is not None:
                    states[key] = state
        alerts, notices, derived = [], [], {}
        for key, state in states.items():
            at = self.watermarks.get((partition, state["cluster"]))
            if at is not None:
                judge_worker(state, at, self.expiry)
            record = derive_worker(state, at, self.expiry)
            derived[key] = record
            was = before.get(key)
            for alert in worker_alerts(was, record, self.drift):
                alerts.append(alert)
                if alert["alert"] == "worker-lost":
                    notices.append({"cluster": state["cluster"], "hostname": state["hostname"], "lost_at": record["expires_at"]})
            if record["state"] == OFFLINE:
                alive.pop(key, None)
            elif record["expires_at"] is not None:
                alive[key] = (state["cluster"], record["expires_at"])
        return Folded(alerts, notices, lambda: self._write(states, derived, ctx))

    def _write(self, states: dict[str, dict], derived: dict[str, dict], ctx: PackContext) -> None:
        topics = self.outputs.topics
        written = 0
        for key, state in states.items():
            state["p"] = ctx.partition
            self.table.put(key, dumps(state), ctx.partition, ctx.receipt)
            record = derived[key]
            if self.exporter is not None:
                self.exporter.worker(ctx.partition, record)
            said_now = (record["state"], record["offline_reason"], record["heartbeat_at"], record["skew"] is not None
                        and round(record["skew"]), record["active"], record["processed"])  # fmt: skip
            last = self.published.get(key)
            # A sign of life alone (task events) republishes at most once per freq.
            if last is None or last[0] != said_now or (record["seen_at"] or 0) - last[1] >= (record["freq"] or 2.0):
                self.outputs.out.send(topics.worker_states, records.encode(record), key.encode(), receipt=ctx.receipt)
                self.published[key] = (said_now, record["seen_at"] or 0)
                written += 1
        if self.metrics:
            self.metrics.records_out.labels(topics.worker_states).inc(written)


_SANE_TYPE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _bounded_type(etype: str) -> str:
    """A label value for an unknown event type: kept only when short and plain (bounded series)."""
    return etype if len(etype) <= 40 and set(etype) <= _SANE_TYPE else "other"


# -- failure bursts -----------------------------------------------------------------------------
def burst_alert(bursts: FailureBursts, value: bytes) -> dict | None:
    failure = orjson.loads(value)
    return bursts.add(failure["cluster"], failure["name"], failure["at"], failure["uuid"])


def group_alert(groups, value: bytes) -> dict | None:
    """A failure-group alert for a failure record (failures written before the exception was
    carried count as an empty exception)."""
    from .failures import fingerprint

    failure = orjson.loads(value)
    exception = failure.get("exception")
    return groups.add(failure["cluster"], failure["name"], failure.get("exception_type") or "", fingerprint(exception),
                      failure["at"], failure["uuid"], exception)  # fmt: skip
