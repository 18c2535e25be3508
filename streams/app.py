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
``streams.folders`` applies them to a pack; ``streams.worker.StreamsWorker`` holds the per-process
state and the steps; the agents and timers here are one call each. Everything the worker writes
goes through one librdkafka producer (``streams.outbox``), and a pack is acked -- its offset may
be committed -- only after every record it caused was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import faust
import mode

from .config import Settings
from .connections import faust_credentials, librdkafka_options
from .exporter import CeleryExporter
from .metrics import StreamsMetrics
from .outbox import Outbox, OutboxTable
from .store import drop_untrusted_stores, mark_clean_stop
from .topics import TABLES
from .worker import StreamsWorker

log = logging.getLogger("streams.app")
STALL_CHECK_SECONDS = 2.0
LAG_SECONDS = 5.0


def faust_app(settings: Settings) -> faust.App:
    """The Faust app object, configured for the settings' Kafka flavor (no agents yet).

    Apache Kafka (KAFKA_FLAVOR=kafka): Faust's own group timings, a 45 s session unless
    STREAMS_SESSION_TIMEOUT says otherwise. Tansu (the dev stack): its corrections
    (streams.tansu) and a short session, as its JoinGroup waits half the session timeout.
    """
    if settings.tansu_fixes:
        from . import tansu

        tansu.install(settings.kafka_bootstrap)
    session = settings.group_session_timeout
    heartbeat = max(0.5, session / 6) if settings.tansu_fixes else min(3.0, session / 3)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_disable_leader=True,
        table_standby_replicas=0,
        broker_session_timeout=session,
        broker_heartbeat_interval=heartbeat,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,  # only used when the web server is enabled
        producer_acks=-1,
        broker_credentials=faust_credentials(settings),
    )


def create_app(settings: Settings) -> faust.App:
    """The Faust app with its tables, agents, timers and services, ready for ``app.main()``."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust_app(settings)
    rocksdb = settings.store.startswith("rocksdb")
    if rocksdb:
        drop_untrusted_stores(settings, Path(app.conf.tabledir), TABLES)

    metrics = StreamsMetrics()
    exporter = CeleryExporter()  # celery-exporter's metrics (streams/exporter.py), on STREAMS_METRICS_ADDR
    metrics.registry.register(exporter)
    outbox = Outbox(librdkafka_options(settings), client_id=f"{settings.app_id}-streams")
    tables = {name: _table(app, name, settings, outbox, rocksdb) for name in TABLES}
    worker = StreamsWorker(app, settings, outbox, tables, metrics, exporter)
    if not rocksdb:  # counting RocksDB keys reads every key
        metrics.watch_tables({"tasks": lambda: len(tables["tasks"]), "workers": lambda: len(tables["workers"])})
    _register(app, settings, worker)

    metrics.serve(settings.streams_metrics_addr)  # now, not in a Faust task: a taken port stops the start
    app.service(_outbox_service(app, outbox, Path(app.conf.tabledir) if rocksdb else None))
    if settings.sink == "inline":
        app.service(_sink_service(settings))
    app.monitor_metrics = metrics  # for tests and the benchmark
    app.celery_exporter = exporter
    app.outbox = outbox
    app.streams_worker = worker
    return app


def _table(app: faust.App, name: str, settings: Settings, outbox: Outbox, rocksdb: bool) -> OutboxTable:
    table = OutboxTable(app, name=name, default=None, partitions=settings.topic_partitions, key_type=str, value_type=bytes,
                        beacon=app.tables.beacon)  # fmt: skip
    table.outbox = outbox
    table.persists_offsets = rocksdb
    return app.tables.add(table)


def _register(app: faust.App, settings: Settings, worker: StreamsWorker) -> None:
    """The agents and timers: each moves records into one step of the worker."""

    def topic(*names: str, **kwargs) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions, **kwargs)

    @app.agent(topic(settings.topic_task_events, worker.names.losses), name="fold_task_events")
    async def fold_task_events(stream):
        async for event in stream.noack().events():
            worker.index_assignment(settings.topic_task_events, event.message.generation_id)
            await worker.process(event, worker.fold_tasks)

    @app.agent(topic(settings.topic_worker_events), name="fold_worker_events")
    async def fold_worker_events(stream):
        async for event in stream.noack().events():
            worker.index_assignment(settings.topic_worker_events, event.message.generation_id)
            await worker.process(event, worker.fold_workers)

    @app.agent(topic(settings.topic_queue_lengths), name="export_queue_lengths")
    async def export_queue_lengths(stream):
        async for event in stream.events():
            worker.queue_sample(event)

    @app.agent(topic(worker.names.failures, internal=True), name="detect_failure_bursts")
    async def detect_failure_bursts(stream):
        async for event in stream.noack().events():
            await worker.fold_failure(event)

    @app.on_partitions_revoked.connect
    async def forget_revoked_counts(_app, revoked, **kwargs):
        worker.revoked(revoked)

    if settings.task_retention > 0:

        @app.timer(interval=min(60.0, settings.task_retention), name="retire_tasks")
        async def retire_tasks():
            worker.retire_tasks()

    @app.timer(interval=STALL_CHECK_SECONDS, name="repair_stalls")
    async def repair_stalls():
        await worker.repair_stalls()

    @app.timer(interval=LAG_SECONDS, name="measure_lag")
    async def measure_lag():
        worker.measure_lag()


def _outbox_service(app: faust.App, outbox: Outbox, tabledir: Path | None):
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
            drained = await outbox.drain()
            if not drained:
                log.warning("stopping with %d records unacknowledged; their source records are re-read", outbox.in_flight)
            self._task.cancel()
            outbox.close()
            if tabledir is not None and drained and not app.crashed:
                mark_clean_stop(tabledir)  # the next start trusts the stores without reading them through

    return OutboxService


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
