"""The Faust application: raw events in, task/worker state tables, state records out.

Data path (docs/architecture.md):
    celery.task-events.v1   --fold_task_events-->   tasks table   --> celery.task-states.v1
                                                     (failures, keyed by task name)
                                                     --> <app>-task-failures --detect_failure_bursts--+
    celery.worker-events.v1 --fold_worker_events--> workers table --> celery.worker-states.v1          |
    expire_workers (timer): heartbeats stopped -> OFFLINE(heartbeat-expired) records + worker-lost    |
    task-critical, failure-burst, worker-lost --> celery.alerts.v1 <----------------------------------+
    anything invalid --> celery.dead-letters.v1 (reason + source offset)
The rules are all in streams.engine; the agents only move bytes in and out of it.

Events are folded in batches (``stream.take_events``): one table write and one state record
per changed task per batch, however many of its events the batch held.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import faust
import mode
from faust.streams import _current_event, current_event
import orjson
from kafka.partitioner.default import murmur2

from . import records
from .config import Settings
from .engine import (
    TaskEvent,
    WorkerEvent,
    derive_task,
    derive_worker,
    fold_task,
    fold_worker,
    retirable,
    task_status,
)
from .engine.alerts import FailureBursts, newly_failed, task_alert, worker_alert
from .exporter import CeleryExporter, contribution, partition_of_key
from .metrics import StreamsMetrics
from .stalls import OffsetGaps, fetch_range, first_offset, install_commit_floor

log = logging.getLogger("streams.app")


class Liveness:
    """What was last announced per worker, so a state (and a worker-lost alert) is published once
    per change. Kept in a table too: a restarted or new owner of the partition does not announce
    every worker again (an alert storm for long-dead workers on each deploy)."""

    def __init__(self, table: "SourceKeyedTable | None" = None) -> None:
        self.announced: dict[str, tuple] = {}
        self.table = table

    def changed(self, key: str, record: dict, event=None) -> tuple | None:
        """The previous (state, reason) when this record changes it, else None.

        ``event``: the source event when called from an agent's batch (the table partition is
        the event's); None from the timer (the key's source partition)."""
        current = (record["state"], record["offline_reason"])
        before = self.announced.get(key)
        if before is None:
            stored = None
            if self.table is not None:
                stored = self.table.get_from(event, key) if event is not None else self.table.get(key)
            before = tuple(stored) if stored else ()
        self.announced[key] = current
        if before == current:
            return None
        if self.table is not None:
            self.table.set_from(event or self.table.anchor(key), key, list(current))
        return before


class _PartitionAnchor:
    """What Faust's table and store read of the current event: ``.message.partition``."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


class SourceKeyedTable(faust.Table):
    """A table whose changelog partition is the partition of the key's source events.

    Faust takes the partition from the event being processed, which a batch (take_events) or a
    timer (retention) does not have: the agents write with the key's last event of the batch
    (``set_from``), and a timer falls back on murmur2 of the source key — the partitioner of the
    bridge and of Java/Kafka clients; the agents check once per partition that they agree.
    """

    source_key: Callable[[str], bytes] = staticmethod(str.encode)

    def partition_for_key(self, key) -> int:
        event = current_event()
        if event is not None:
            return event.message.partition
        return self.source_partition(key)

    def source_partition(self, key) -> int:
        return _murmur2_partition(self.source_key(key), self.partitions)

    def get_from(self, event, key: str):
        """``table.get(key)`` as if while processing ``event``: RocksDB reads the partition DB of
        the current event, which in a batch is the stream's last event, not this one."""
        token = _current_event.set(weakref.ref(event))
        try:
            return self.get(key)
        finally:
            _current_event.reset(token)

    def anchor(self, key: str) -> "_PartitionAnchor":
        """A stand-in for the event being processed, for writes from a timer: RocksDB's store
        refuses a write without one (it picks the partition DB from it)."""
        return _PartitionAnchor(self.source_partition(key))

    def set_from(self, event, key: str, value) -> None:
        """``table[key] = value`` as if while processing ``event`` (RocksDB picks its partition DB so)."""
        token = _current_event.set(weakref.ref(event))
        try:
            self[key] = value
        finally:
            _current_event.reset(token)


class PartitionKeyedTable(SourceKeyedTable):
    """Keys ``"<partition>/..."`` live in the partition they name: the exporter's per-partition counts."""

    def source_partition(self, key) -> int:
        return partition_of_key(key)


PUBLISHED_MEMORY = 1_000_000  # tasks whose last published record a worker remembers (~100 B each)


class Published(dict):
    """events_count of the last record this worker published per task, for the most recent ones.

    A duplicate event normally publishes nothing; one for a task not in here (a restart, a
    partition taken over, or forgotten) publishes its record again — same record, harmless.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def record(self, key: str, events_count: int) -> None:
        self.pop(key, None)
        self[key] = events_count
        if len(self) > self.capacity:
            del self[next(iter(self))]  # the least recently published


def _murmur2_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _check_partitioner(msg, partitions: int) -> None:
    """Does murmur2 of this record's key give its partition (what timers assume, see SourceKeyedTable)?"""
    if msg.key is not None and _murmur2_partition(msg.key, partitions) != msg.partition:
        log.error(
            "key %r arrived on %s:%d but murmur2 places it on partition %d: its producer does not partition "
            "with murmur2 (the Kafka default); table state may be restored on the wrong worker",
            msg.key, msg.topic, msg.partition, _murmur2_partition(msg.key, partitions),
        )


def _forget_local_tables(tabledir: Path) -> None:
    """Start RocksDB tables empty: they are rebuilt from their changelogs.

    RocksDB keeps every write at once, the changelog and the output records only once Kafka has
    them: after a kill -9 the local state can hold events whose records were never published,
    and re-delivered events would then look like duplicates and publish nothing. RocksDB is
    here for tables larger than memory, not for faster restarts.
    """
    if tabledir.exists():
        log.info("rebuilding RocksDB tables in %s from their changelogs", tabledir)
        shutil.rmtree(tabledir)


def _task_source_key(key: str) -> bytes:
    return key.rsplit("/", 1)[-1].encode()  # tasks: "cluster/uuid"; the bridge keys by uuid


class _Refetched:
    """A record read back with fetch_range, shaped like the Faust events the agents use."""

    __slots__ = ("message", "value", "__weakref__")

    def __init__(self, tp, record):
        self.message = SimpleNamespace(tp=tp, topic=tp.topic, partition=tp.partition, offset=record.offset)
        self.value = record.value


def _source(event) -> dict:
    msg = event.message
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}


def create_app(settings: Settings) -> faust.App:
    partitions = settings.topic_partitions
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if settings.tansu_fixes:
        from . import tansu

        tansu.install(settings.kafka_bootstrap)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 6),
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,  # only used when the web server is enabled
        producer_acks=-1,
        # A batch publishes thousands of records over many partitions at once; without a linger
        # aiokafka sends each as its own tiny produce request (a quarter of the worker's time).
        producer_linger=0.01,
        broker_credentials=_credentials(settings),
    )

    if settings.store.startswith("rocksdb"):
        _forget_local_tables(app.conf.tabledir)

    def topic(name: str, **kwargs) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions, **kwargs)

    task_events = topic(settings.topic_task_events)
    worker_events = topic(settings.topic_worker_events)
    task_states = topic(settings.topic_task_states)
    worker_states = topic(settings.topic_worker_states)
    dead_letters = topic(settings.topic_dead_letters)
    alerts = topic(settings.topic_alerts)
    # Every failure of a task name must reach one instance to count bursts: re-keyed by name.
    task_failures = topic(f"{settings.app_id}-task-failures", internal=True)

    # Values are engine state dicts; Faust's JSON writes the `ids` set as a list, and the fold
    # turns it back into a set on the next event (see fold_task).
    def table(name: str, source_key: Callable[[str], bytes]) -> SourceKeyedTable:
        created = SourceKeyedTable(app, name=name, default=None, partitions=partitions, key_type=str, beacon=app.tables.beacon)
        created.source_key = source_key
        return app.tables.add(created)

    tasks = table("tasks", _task_source_key)
    workers = table("workers", str.encode)
    liveness = Liveness(table("worker-announcements", str.encode))
    counts = app.tables.add(PartitionKeyedTable(app, name="celery-metrics", default=None, partitions=partitions, key_type=str, beacon=app.tables.beacon))
    exporter = CeleryExporter()  # celery-exporter's metrics (streams/exporter.py), on STREAMS_METRICS_ADDR
    bursts = FailureBursts(settings.alert_failure_window, settings.alert_failure_threshold)
    gaps = OffsetGaps()
    published = Published(PUBLISHED_MEMORY)
    expiry = settings.worker_expiry_factor
    metrics = StreamsMetrics()
    metrics.registry.register(exporter)
    if not settings.store.startswith("rocksdb"):  # counting RocksDB keys reads every key
        metrics.watch_tables({"tasks": lambda: len(tasks), "workers": lambda: len(workers)})

    async def in_order(batch, refetched: list) -> list:
        """The batch, with any records Faust never delivered (faust#596) read back before their successors."""
        out = []
        for event in batch:
            msg = event.message
            tp, generation = msg.tp, msg.generation_id
            if not gaps.knows(tp, generation):
                if tp.topic == settings.topic_task_events:  # (re)gained: counts as persisted, maybe by another worker
                    exporter.own(tp.partition, counts.items())
                install_commit_floor(app.consumer, gaps.floors)
                gaps.start(tp, generation, await first_offset(app.consumer, tp))
                _check_partitioner(msg, partitions)
            missing = gaps.missing_before(tp, generation, msg.offset)
            if missing:
                log.warning(
                    "records %d..%d of %s:%d were never delivered to the agent (faust#596, after table recovery); "
                    "reading them directly and holding commits there",
                    missing.start, missing.stop - 1, tp.topic, tp.partition,
                )
                found = await asyncio.get_running_loop().run_in_executor(
                    None, fetch_range, settings, tp.topic, tp.partition, missing
                )
                out.extend(_Refetched(tp, record) for record in found)
                refetched.append((tp, missing))
                metrics.offset_gaps_repaired.inc()
            out.append(event)
        return out

    async def valid_items(batch, refetched: list, kind: type, expected: str):
        """(event, item) for every valid event of the batch, in offset order; the rest to dead letters."""
        for event in await in_order(batch, refetched):
            for item in records.decode(event.value):
                if item.__class__ is not kind:
                    await dead_letter(item, event, expected)
                    continue
                yield event, item

    def ack_refetched(refetched: list) -> None:
        """Once folded and published: the read-back offsets count as processed, commits resume."""
        consumer = app.consumer
        for tp, missing in refetched:
            committed = consumer._committed_offset.get(tp) or 0
            offsets = [o for o in missing if o >= committed and o not in consumer._acked_index[tp]]
            consumer._acked[tp].extend(offsets)
            consumer._acked_index[tp].update(offsets)
            gaps.filled(tp)

    async def dead_letter(item, event, expected: str) -> None:
        metrics.dead_letters.labels(event.message.topic).inc()
        await dead_letters.send(value=records.dead_letter(_as_invalid(item, expected), _source(event), "streams"))

    async def alert(record: dict | None) -> None:
        if record is not None:
            metrics.alerts.labels(record["alert"]).inc()
            await alerts.send(key=record["key"].encode(), value=records.encode(record))

    @app.agent(task_events, name="fold_task_events")
    async def fold_task_events(stream):
        async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_seconds):
            started = time.perf_counter()
            changed: dict[str, dict] = {}  # key -> state, folded across the batch
            before: dict[str, str | None] = {}  # key -> state name at the start of the batch
            counted: dict = {}  # key -> what the task had contributed to the exporter's counters
            origin: dict = {}  # key -> an event of the batch that carried it (its partition)
            refetched: list = []
            async for event, item in valid_items(batch, refetched, TaskEvent, "task"):
                key = item.key
                state = changed.get(key)
                if state is None:
                    state = tasks.get_from(event, key)
                    before[key] = task_status(state) if state is not None else None
                    counted[key] = contribution(state)
                state, is_new = fold_task(state, item)
                if is_new or published.get(key) != len(state["ids"]):
                    # A duplicate whose record this worker has not published: after a kill -9
                    # the table (changelog, RocksDB) can be ahead of the output topic.
                    changed[key] = state
                    origin[key] = event
            metrics.events_in.labels(settings.topic_task_events).inc(len(batch))
            metrics.events_merged.labels("tasks").inc(len(changed))
            folded_at = time.time()
            for key, state in changed.items():
                state["folded_at"] = folded_at  # retention counts from here too (engine.retirable)
                tasks.set_from(origin[key], key, state)
                record = derive_task(state)
                exporter.task_changed(origin[key].message.partition, counted[key], state, record)
                await task_states.send(key=state["uuid"].encode(), value=records.encode(record))
                published.record(key, record["events_count"])
                await alert(task_alert(before.get(key), record))
                if newly_failed(before.get(key), record) and record.get("name"):
                    failure = {"cluster": record["cluster"], "name": record["name"], "at": record.get("failed_at") or state["last"], "uuid": record["uuid"]}
                    await task_failures.send(key=f"{record['cluster']}/{record['name']}".encode(), value=orjson.dumps(failure))
            metrics.records_out.labels(settings.topic_task_states).inc(len(changed))
            for count_key, value in exporter.take_dirty():
                counts.set_from(counts.anchor(count_key), count_key, value)
            metrics.batch_seconds.labels("tasks").set(time.perf_counter() - started)
            ack_refetched(refetched)

    @app.agent(task_failures, name="detect_failure_bursts")
    async def detect_failure_bursts(stream):
        async for value in stream:
            failure = orjson.loads(value)
            await alert(bursts.add(failure["cluster"], failure["name"], failure["at"], failure["uuid"]))

    @app.agent(worker_events, name="fold_worker_events")
    async def fold_worker_events(stream):
        async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_seconds):
            changed: dict[str, dict] = {}
            origin: dict = {}
            refetched: list = []
            async for event, item in valid_items(batch, refetched, WorkerEvent, "worker"):
                key = item.key
                state, is_new = fold_worker(changed.get(key) or workers.get_from(event, key), item)
                if is_new:
                    changed[key] = state
                    origin[key] = event
            metrics.events_in.labels(settings.topic_worker_events).inc(len(batch))
            for key, state in changed.items():
                workers.set_from(origin[key], key, state)
                record = derive_worker(state, None, expiry)
                liveness.changed(key, record, origin[key])  # the timer then only publishes real changes
                await worker_states.send(key=key.encode(), value=records.encode(record))
            metrics.records_out.labels(settings.topic_worker_states).inc(len(changed))
            ack_refetched(refetched)

    @app.timer(interval=1.0, name="expire_workers")
    async def expire_workers():
        if app.rebalancing or getattr(app, "in_recovery", False):
            # Faust runs timers during table recovery: half-restored tables would make every
            # known worker look unannounced (and a dead one alert again).
            return
        now = time.time()
        judged = []
        for key, state in list(workers.items()):
            record = derive_worker(state, now, expiry)
            judged.append(record)
            before = liveness.changed(key, record)
            if before is not None:
                record["evaluated_at"] = now
                await worker_states.send(key=key.encode(), value=records.encode(record))
                await alert(worker_alert(before or None, record))
        exporter.set_workers(judged, now)
        assigned = app.consumer.assignment()
        for partition in {tp.partition for tp in assigned if tp.topic == settings.topic_task_events} - exporter.owned():
            exporter.own(partition, counts.items())  # owned, no event yet since the start: export the stored counts
        exporter.drop_queue_partitions({tp.partition for tp in assigned if tp.topic == settings.topic_queue_lengths})

    @app.on_partitions_revoked.connect
    async def forget_revoked_counts(_app, revoked, **kwargs):
        for tp in revoked:
            if tp.topic == settings.topic_task_events:
                exporter.drop(tp.partition)  # the new owner exports them from now on

    @app.agent(topic(settings.topic_queue_lengths), name="export_queue_lengths")
    async def export_queue_lengths(stream):
        async for event in stream.events():
            exporter.queue_sample(event.message.partition, orjson.loads(event.value))

    if settings.task_retention > 0:

        @app.timer(interval=min(60.0, settings.task_retention), name="retire_tasks")
        async def retire_tasks():
            now = time.time()
            done = [key for key, state in list(tasks.items()) if retirable(state, now, settings.task_retention)]
            for key in done:
                del tasks[key]  # a changelog tombstone: a restarted worker does not bring it back
                published.pop(key, None)
            if done:
                metrics.retired.inc(len(done))
                log.info("retired %d finished tasks older than %.0fs from the table", len(done), settings.task_retention)

    @app.timer(interval=5.0, name="measure_lag")
    async def measure_lag():
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic in settings.event_topics:
                highwater = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp) or 0
                if highwater is not None:
                    metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - committed, 0))

    metrics.serve(settings.streams_metrics_addr)  # now, not in a Faust task: a taken port stops the start

    if settings.sink == "inline":
        app.service(_sink_service(settings))
    app.monitor_metrics = metrics  # for tests and the benchmark
    app.celery_exporter = exporter
    return app


def _credentials(settings: Settings):
    """Faust/aiokafka credentials from the same settings the kafka-python clients use."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context)


def _as_invalid(item, expected: str) -> records.Invalid:
    if isinstance(item, records.Invalid):
        return item
    return records.Invalid(f"{type(item).__name__} on the {expected}-events topic", item.body)


def _sink_service(settings: Settings):
    from .sink.consumer import ClickHouseSink  # clickhouse-driver only where the sink runs

    class ClickHouseSinkService(mode.Service):
        """Runs the commit-after-write sink in a thread beside the agents; its crash is the worker's."""

        async def on_start(self) -> None:
            self.sink = ClickHouseSink(settings)
            loop = asyncio.get_running_loop()

            def run() -> None:
                try:
                    self.sink.run()
                except BaseException as exc:  # noqa: BLE001 - reported to the worker, which stops
                    log.exception("ClickHouse sink crashed; stopping the worker so a supervisor restarts it")
                    asyncio.run_coroutine_threadsafe(self.crash(exc), loop)

            self.thread = threading.Thread(target=run, name="clickhouse-sink", daemon=True)
            self.thread.start()

        async def on_stop(self) -> None:
            self.sink.stop()
            await asyncio.get_running_loop().run_in_executor(None, self.thread.join, 15)

    return ClickHouseSinkService
