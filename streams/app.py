"""The Faust application: packs of raw events in, task/worker state tables, state records out.

Data path (docs/architecture.md):
    celery.task-events.v2    --fold_task_events-->   tasks table    --> celery.task-states.v1
      (+ <app>-worker-losses: a lost worker, on every partition -> its tasks tagged orphaned)
                                                      failures --> <app>-task-failures (key cluster/name)
                                                                   --detect_failure_bursts--+
    celery.worker-events.v2  --fold_worker_events--> workers table  --> celery.worker-states.v1   |
      (events, signs of life from task events, ticks: liveness judged at the pack watermark)     |
    task-critical, task-orphaned, failure-burst, worker-lost, clock-drift --> celery.alerts.v1 <-+
    anything invalid --> celery.dead-letters.v1 (reason + source offset)

One Faust event is one pack: all its events belong to the event's partition, so every table
read and write happens in that partition. The rules are all in ``streams.engine``;
``streams.folders`` applies them to a pack; the agents here only move records in and out.
Everything the worker writes goes through one librdkafka producer (``streams.outbox``), and a
pack is acked -- its offset may be committed -- only after every record it caused was
acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import faust
import mode
import orjson

from .config import Settings
from .records import decode
from .engine.alerts import FailureBursts
from .exporter import CeleryExporter
from .folders import Outputs, PackContext, TaskFolder, Topics, WorkerFolder, burst_alert, index_partitions
from .metrics import StreamsMetrics
from .outbox import Outbox, OutboxTable, Receipt
from .stalls import OffsetGaps, ack_read_back, as_current_event, committed_offset, fetch_range, first_offset, install_commit_floor

log = logging.getLogger("streams.app")
STALL_CHECK_SECONDS = 2.0
STALL_PATIENCE_SECONDS = 6.0  # nothing of a partition for this long while its high watermark is ahead
READ_BACK_MAX_RECORDS = 500  # packs read back per stalled partition per check (≈ 250k events at most)


def _forget_local_tables(tabledir: Path) -> None:
    """Start RocksDB tables empty: they are rebuilt from their changelogs.

    RocksDB keeps every write at once, the changelog only once Kafka has it: after a kill -9 the
    local state can hold events whose records were never published, and re-read packs would
    then look like duplicates and publish nothing. RocksDB is here for tables larger than
    memory, not for faster restarts.
    """
    if tabledir.exists():
        log.info("rebuilding RocksDB tables in %s from their changelogs", tabledir)
        shutil.rmtree(tabledir)


class _Refetched:
    """A record read back with fetch_range (faust#596), shaped like the Faust events the agents use."""

    __slots__ = ("message", "value", "__weakref__")

    def __init__(self, tp, record):
        self.message = SimpleNamespace(tp=tp, topic=tp.topic, partition=tp.partition, offset=record.offset)
        self.value = record.value


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
        broker_credentials=_credentials(settings),
    )
    if settings.store.startswith("rocksdb"):
        _forget_local_tables(app.conf.tabledir)

    metrics = StreamsMetrics()
    exporter = CeleryExporter()  # celery-exporter's metrics (streams/exporter.py), on STREAMS_METRICS_ADDR
    metrics.registry.register(exporter)
    outbox = Outbox(settings.librdkafka_options(), client_id=f"{settings.app_id}-streams")
    names = Topics(settings, settings.app_id)
    outputs = Outputs(outbox, names, metrics)

    def topic(*topic_names: str, **kwargs) -> faust.TopicT:
        return app.topic(*topic_names, key_serializer="raw", value_serializer="raw", partitions=partitions, **kwargs)

    def table(name: str) -> OutboxTable:
        created = OutboxTable(app, name=name, default=None, partitions=partitions, key_type=str,
                              value_type=bytes, beacon=app.tables.beacon)  # fmt: skip
        created.outbox = outbox
        created.persists_offsets = settings.store.startswith("rocksdb")
        return app.tables.add(created)

    tasks, workers, losses = table("tasks"), table("workers"), table("worker-losses")
    counts = table("celery-metrics")  # the exporter's counts per partition/cluster/task name
    tables = (tasks, workers, losses, counts)
    task_folder = TaskFolder(tasks, losses, outputs, metrics, exporter=exporter, counts=counts)
    worker_folder = WorkerFolder(workers, outputs, settings.worker_expiry_factor, settings.worker_drift_threshold, metrics, exporter=exporter)
    bursts = FailureBursts(settings.alert_failure_window, settings.alert_failure_threshold)
    gaps = OffsetGaps()
    rebuilt: dict[str, int] = {}  # source topic -> generation whose assignment the folder indexed
    if not settings.store.startswith("rocksdb"):  # counting RocksDB keys reads every key
        metrics.watch_tables({"tasks": lambda: len(tasks), "workers": lambda: len(workers)})

    # -- the shared path of every source record ----------------------------------------------
    locks: dict = {}  # source partition -> asyncio.Lock: one record at a time, agent or repair
    quiet_since: dict = {}  # source partition -> monotonic time its last record reached us

    async def in_order(event) -> list:
        """The event, after any records Faust never delivered (faust#596), read back first."""
        msg = event.message
        tp, generation = msg.tp, msg.generation_id
        quiet_since[tp] = time.monotonic()
        out = []
        if not gaps.knows(tp, generation):
            install_commit_floor(app.consumer, gaps.floors)
            gaps.start(tp, generation, await first_offset(app.consumer, tp))
        missing = gaps.missing_before(tp, generation, msg.offset)
        if missing:
            log.warning(
                "records %d..%d of %s:%d were never delivered to the agent (faust#596, after table recovery); "
                "reading them directly and holding commits there",
                missing.start, missing.stop - 1, tp.topic, tp.partition,
            )  # fmt: skip
            found = await asyncio.get_running_loop().run_in_executor(None, fetch_range, settings, tp.topic, tp.partition, missing)
            out.extend(_Refetched(tp, record) for record in found)
            metrics.offset_gaps_repaired.inc()
        out.append(event)
        return out

    def index_assignment(topic_name: str, generation: int, folder) -> None:
        """Rebuild a folder's in-memory indexes from the table once per assignment generation."""
        if rebuilt.get(topic_name) == generation:
            return
        rebuilt[topic_name] = generation
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic_name}
        started = time.perf_counter()
        source = tasks if folder is task_folder else workers
        kept = index_partitions(folder, assigned, source.items())
        export_assignment(reload=folder is task_folder)
        log.info("indexed %d rows of %d partitions of %s in %.2fs", kept, len(assigned), topic_name, time.perf_counter() - started)

    def export_assignment(reload: bool = False) -> None:
        """The exporter exports the partitions this worker owns: counts (re)loaded from their
        table when a generation starts, workers and queue samples of revoked partitions dropped."""
        assignment = app.consumer.assignment()
        owned = {topic: {tp.partition for tp in assignment if tp.topic == topic} for topic in
                 (settings.topic_task_events, settings.topic_worker_events, settings.topic_queue_lengths)}  # fmt: skip
        exporter.assign_tasks(owned[settings.topic_task_events], counts.items(), reload=reload)
        exporter.keep_workers(owned[settings.topic_worker_events])
        exporter.drop_queue_partitions(owned[settings.topic_queue_lengths])

    def acker(source):
        if isinstance(source, _Refetched):
            return lambda: _ack_refetched(source)
        return source.ack

    def _ack_refetched(record: _Refetched) -> None:
        """A read-back offset counts as processed once its records were acknowledged."""
        ack_read_back(app.consumer, record.message.tp, record.message.offset)

    async def process(event, fold) -> None:
        """Fold one source record (and any it revealed missing) and send what it caused."""
        await outbox.room()
        lock = locks.setdefault(event.message.tp, asyncio.Lock())
        async with lock:
            for source in await in_order(event):
                await process_one(source, fold)

    async def process_one(source, fold) -> None:
        msg = source.message
        ctx = PackContext(msg.topic, msg.partition, msg.offset, Receipt(acker(source)))
        for t in tables:
            t.receipt = ctx.receipt  # table writes count among the record's outputs
        try:
            folded = fold(source, ctx)
            if folded.alerts or folded.notices:
                await send_first(folded)
            folded.write()
        finally:
            for t in tables:
                t.receipt = None
        ctx.receipt.seal()

    async def send_first(folded) -> None:
        """Alerts (and lost-worker notices) before the state that records them as raised: a crash
        in between raises them again rather than never (at-least-once)."""
        done = asyncio.get_running_loop().create_future()
        receipt = Receipt(lambda: done.done() or done.set_result(None))
        for alert in folded.alerts:
            outputs.alert(alert, receipt)
        for notice in folded.notices:
            value = orjson.dumps(notice)
            key = f"{notice['cluster'] or ''}/{notice['hostname']}".encode()
            for partition in range(partitions):
                outbox.send(names.losses, value, key, partition, receipt=receipt)
        receipt.seal()
        await done

    # -- agents ----------------------------------------------------------------------------
    def fold_tasks(source, ctx: PackContext):
        if ctx.topic == names.losses:
            return task_folder.worker_lost(orjson.loads(source.value), ctx)
        return task_folder.pack(decode(source.value), ctx)

    def fold_workers(source, ctx: PackContext):
        return worker_folder.pack(decode(source.value), ctx)

    @app.agent(topic(settings.topic_task_events, names.losses), name="fold_task_events")
    async def fold_task_events(stream):
        async for event in stream.noack().events():
            index_assignment(settings.topic_task_events, event.message.generation_id, task_folder)
            await process(event, fold_tasks)

    @app.agent(topic(settings.topic_worker_events), name="fold_worker_events")
    async def fold_worker_events(stream):
        async for event in stream.noack().events():
            index_assignment(settings.topic_worker_events, event.message.generation_id, worker_folder)
            await process(event, fold_workers)

    @app.agent(topic(settings.topic_queue_lengths), name="export_queue_lengths")
    async def export_queue_lengths(stream):
        async for event in stream.events():
            exporter.queue_sample(event.message.partition, orjson.loads(event.value))

    @app.on_partitions_revoked.connect
    async def forget_revoked_counts(_app, revoked, **kwargs):
        exporter.drop_tasks({tp.partition for tp in revoked if tp.topic == settings.topic_task_events})

    @app.agent(topic(names.failures, internal=True), name="detect_failure_bursts")
    async def detect_failure_bursts(stream):
        async for event in stream.noack().events():
            alert = burst_alert(bursts, event.value)
            receipt = Receipt(event.ack)
            if alert is not None:
                outputs.alert(alert, receipt)
            receipt.seal()

    if settings.task_retention > 0:

        @app.timer(interval=min(60.0, settings.task_retention), name="retire_tasks")
        async def retire_tasks():
            if app.rebalancing:
                return
            now = time.time()
            retired = 0
            for tp in app.consumer.assignment():
                if tp.topic != settings.topic_task_events:
                    continue
                for key in task_folder.retire(now, settings.task_retention, tp.partition):
                    tasks.delete_in(tp.partition, key)  # a changelog tombstone: a restart does not bring it back
                    retired += 1
            if retired:
                metrics.retired.inc(retired)
                log.info("retired %d finished tasks older than %.0fs from the table", retired, settings.task_retention)

    folds = {settings.topic_task_events: fold_tasks, names.losses: fold_tasks, settings.topic_worker_events: fold_workers}

    @app.timer(interval=STALL_CHECK_SECONDS, name="repair_stalls")
    async def repair_stalls():
        """Records Faust fetched and dropped with no later record to reveal them (faust#596)."""
        if app.rebalancing or getattr(app, "in_recovery", False):
            return
        consumer, now = app.consumer, time.monotonic()
        for tp in consumer.assignment():
            if tp.topic not in folds or now - quiet_since.setdefault(tp, now) < STALL_PATIENCE_SECONDS:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None or highwater <= (gaps.next_offset(tp) or 0):
                continue
            start = gaps.next_offset(tp)
            missing = gaps.stalled(tp, highwater, start if start is not None else await first_offset(consumer, tp),
                                   now - quiet_since[tp], STALL_PATIENCE_SECONDS)  # fmt: skip
            if not missing:
                continue
            missing = missing[:READ_BACK_MAX_RECORDS]  # memory: the rest at the next check, if still stalled
            log.warning(
                "records %d..%d of %s:%d were fetched but never delivered to the agent (faust#596, after table "
                "recovery); reading them directly", missing.start, missing.stop - 1, tp.topic, tp.partition,
            )  # fmt: skip
            install_commit_floor(consumer, gaps.floors)
            gaps.floors.setdefault(tp, missing.start)
            found = await asyncio.get_running_loop().run_in_executor(None, fetch_range, settings, tp.topic, tp.partition, missing)
            metrics.offset_gaps_repaired.inc()
            async with locks.setdefault(tp, asyncio.Lock()):
                for record in found:
                    if gaps.next_offset(tp) is not None and record.offset < gaps.next_offset(tp):
                        continue  # the agent got it meanwhile
                    refetched = _Refetched(tp, record)
                    await outbox.room()
                    with as_current_event(refetched):
                        await process_one(refetched, folds[tp.topic])
                    gaps.advance(tp, app.consumer_generation_id, record.offset)
            quiet_since[tp] = time.monotonic()

    @app.timer(interval=5.0, name="measure_lag")
    async def measure_lag():
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic in settings.event_topics:
                highwater = consumer.highwater(tp)
                committed = committed_offset(consumer, tp) or 0
                if highwater is not None:
                    metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - committed, 0))
        for (partition, cluster), mark in list(worker_folder.watermarks.items()):
            metrics.watermark.labels(cluster or "", str(partition)).set(mark)
        if not app.rebalancing:
            export_assignment()  # partitions owned but quiet since the start are exported too

    metrics.serve(settings.streams_metrics_addr)  # now, not in a Faust task: a taken port stops the start

    app.service(_outbox_service(app, outbox))
    if settings.sink == "inline":
        app.service(_sink_service(settings))
    app.monitor_metrics = metrics  # for tests and the benchmark
    app.celery_exporter = exporter
    app.outbox = outbox
    return app


def _outbox_service(app: faust.App, outbox: Outbox):
    class OutboxService(mode.Service):
        """Serves the producer's delivery reports on the event loop; drains it on stop."""

        async def on_start(self) -> None:
            self._task = asyncio.ensure_future(self._run())

        async def _run(self) -> None:
            try:
                await outbox.run()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - a record Kafka refused: stop, re-read after restart
                await app.crash(exc)

        async def on_stop(self) -> None:
            if not await outbox.drain():
                log.warning("stopping with %d records unacknowledged; their source records are re-read", outbox.in_flight)
            self._task.cancel()
            outbox.close()

    return OutboxService


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
