"""What a streams worker holds and does between Faust and the folders, one method per step.

``streams.app`` builds the Faust app and registers agents and timers that are one call each into
a :class:`StreamsWorker`. The worker owns, for the partitions assigned to this process:

* the tables (``OutboxTable``: store + changelog through the outbox) and the folders that apply the
  engine to a pack (``streams.folders``);
* the outbox (one librdkafka producer) and, per source record, a ``Receipt``: the record's Faust
  event is acked -- its offset may be committed -- only once every record it caused is
  acknowledged (``process_one``);
* the faust#596 guard: per source partition, the next offset expected; a gap is read back and
  folded first (``in_order``), and a partition Faust stopped delivering is read back from a timer
  (``repair_stalls``) -- ``streams.stalls``;
* per-assignment indexes, rebuilt once per generation (``index_assignment``), and what the
  celery-exporter metrics export (``export_assignment``).

The Faust consumer is reached only through the ``app`` given (its public API, plus what
``streams.compat`` names).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import orjson

from .config import Settings
from .engine.alerts import FailureBursts, FailureGroups
from .exporter import CeleryExporter
from .folders import Folded, Outputs, PackContext, TaskFolder, Topics, WorkerFolder, burst_alert, group_alert, index_partitions
from .metrics import StreamsMetrics
from .outbox import Outbox, OutboxTable, Receipt
from .records import decode
from .stalls import OffsetGaps, ack_read_back, as_current_event, committed_offset, fetch_range, fetch_ranges, first_offset, install_commit_floor

log = logging.getLogger("streams.worker")
STALL_PATIENCE_SECONDS = 6.0  # nothing of a partition for this long while its high watermark is ahead
STALL_RECHECK_SECONDS = 2.0  # the same, for a partition read back within the last minute
READ_BACK_MAX_RECORDS = 500  # packs read back per stalled partition per check (≈ 250k events at most)


class Refetched:
    """A record read back with fetch_range (faust#596), shaped like the Faust events the agents use."""

    __slots__ = ("message", "value", "__weakref__")

    def __init__(self, tp, record):
        self.message = SimpleNamespace(tp=tp, topic=tp.topic, partition=tp.partition, offset=record.offset)
        self.value = record.value


class StreamsWorker:
    """The per-process state of a streams worker and the steps its agents and timers run.

    ``tables`` maps table name -> ``OutboxTable`` (tasks, workers, worker-losses, celery-metrics);
    ``app`` is the Faust app (its consumer and rebalancing flags are read, never changed but for
    the commit floor of the faust#596 guard).
    """

    def __init__(self, app, settings: Settings, outbox: Outbox, tables: dict[str, OutboxTable], metrics: StreamsMetrics,
                 exporter: CeleryExporter):  # fmt: skip
        self.app = app
        self.settings = settings
        self.outbox = outbox
        self.tables = tables
        self.metrics = metrics
        self.exporter = exporter
        self.names = Topics(settings, settings.app_id)
        self.outputs = Outputs(outbox, self.names, metrics)
        self.task_folder = TaskFolder(tables["tasks"], tables["worker-losses"], self.outputs, metrics, exporter=exporter,
                                      counts=tables["celery-metrics"], slow_runtime=settings.alert_slow_runtime)  # fmt: skip
        self.worker_folder = WorkerFolder(tables["workers"], self.outputs, settings.worker_expiry_factor,
                                          settings.worker_drift_threshold, metrics, exporter=exporter)  # fmt: skip
        self.bursts = FailureBursts(settings.alert_failure_window, settings.alert_failure_threshold)
        self.groups = FailureGroups(settings.alert_group_quiet) if settings.alert_group_quiet > 0 else None
        self.gaps = OffsetGaps()
        self.rebuilt: dict[str, int] = {}  # source topic -> generation whose assignment the folder indexed
        self.locks: dict = {}  # source partition -> asyncio.Lock: one record at a time, agent or repair
        self.quiet_since: dict = {}  # source partition -> monotonic time its last record reached us
        self.read_back_at: dict = {}  # source partition -> monotonic time of its last stall read-back
        self.folds = {settings.topic_task_events: self.fold_tasks, self.names.losses: self.fold_tasks,
                      settings.topic_worker_events: self.fold_workers}  # fmt: skip

    # -- folding a source record ----------------------------------------------------------------
    def fold_tasks(self, source, ctx: PackContext) -> Folded:
        if ctx.topic == self.names.losses:
            return self.task_folder.worker_lost(orjson.loads(source.value), ctx)
        return self.task_folder.pack(decode(source.value), ctx)

    def fold_workers(self, source, ctx: PackContext) -> Folded:
        return self.worker_folder.pack(decode(source.value), ctx)

    async def process(self, event, fold) -> None:
        """Fold one source record (and any it revealed missing) and send what it caused."""
        await self.outbox.room()
        lock = self.locks.setdefault(event.message.tp, asyncio.Lock())
        async with lock:
            for source in await self.in_order(event):
                await self.process_one(source, fold)

    async def process_one(self, source, fold) -> None:
        msg = source.message
        ctx = PackContext(msg.topic, msg.partition, msg.offset, Receipt(self._acker(source)))
        for table in self.tables.values():
            table.receipt = ctx.receipt  # table writes count among the record's outputs
        try:
            folded = fold(source, ctx)
            if folded.alerts or folded.notices:
                await self.send_first(folded)
            folded.write()
        finally:
            for table in self.tables.values():
                table.receipt = None
        ctx.receipt.seal()

    async def send_first(self, folded: Folded) -> None:
        """Alerts (and lost-worker notices) before the state that records them as raised: a crash
        in between raises them again rather than never (at-least-once)."""
        done = asyncio.get_running_loop().create_future()
        receipt = Receipt(lambda: done.done() or done.set_result(None))
        for alert in folded.alerts:
            self.outputs.alert(alert, receipt)
        for notice in folded.notices:
            value = orjson.dumps(notice)
            key = f"{notice['cluster'] or ''}/{notice['hostname']}".encode()
            for partition in range(self.settings.topic_partitions):
                self.outbox.send(self.names.losses, value, key, partition, receipt=receipt)
        receipt.seal()
        await done

    def _acker(self, source):
        if isinstance(source, Refetched):
            tp, offset = source.message.tp, source.message.offset
            return lambda: ack_read_back(self.app.consumer, tp, offset)  # counts once its records are acked
        return source.ack

    async def fold_failure(self, event) -> None:
        """A failure re-keyed by task name: count it towards a failure-burst alert, and a
        failure-group alert when its group is new or back after a quiet period."""
        found = [burst_alert(self.bursts, event.value)]
        if self.groups is not None:
            found.append(group_alert(self.groups, event.value))
        receipt = Receipt(event.ack)
        for alert in found:
            if alert is not None:
                self.outputs.alert(alert, receipt)
        receipt.seal()

    def queue_sample(self, event) -> None:
        """A queue-length sample, for celery_queue_length and friends."""
        self.exporter.queue_sample(event.message.partition, orjson.loads(event.value))

    # -- faust#596: records Faust never delivers ---------------------------------------------
    async def in_order(self, event) -> list:
        """The event, after any records Faust never delivered (faust#596), read back first."""
        msg = event.message
        tp, generation = msg.tp, msg.generation_id
        self.quiet_since[tp] = time.monotonic()
        out = []
        if not self.gaps.knows(tp, generation):
            install_commit_floor(self.app.consumer, self.gaps.floors)
            self.gaps.start(tp, generation, await first_offset(self.app.consumer, tp))
        missing = self.gaps.missing_before(tp, generation, msg.offset)
        if missing:
            log.warning(
                "records %d..%d of %s:%d were never delivered to the agent (faust#596 after a table recovery, or a broker "
                "that answered fetches without them); reading them directly and holding commits there",
                missing.start, missing.stop - 1, tp.topic, tp.partition,
            )  # fmt: skip
            found = await self._read_back(tp, missing)
            self._hole_read(tp, missing, found)
            out.extend(Refetched(tp, record) for record in found)
            self.metrics.offset_gaps_repaired.inc()
        out.append(event)
        return out

    async def repair_stalls(self) -> None:
        """Records Faust fetched and dropped with no later record to reveal them (faust#596), or
        that a broker holds but does not hand the consumer: read back, every stalled partition
        with one consumer. A partition read back within the last minute is judged after
        STALL_RECHECK_SECONDS: a broker that stopped handing records keeps doing so for minutes."""
        app = self.app
        if app.rebalancing or getattr(app, "in_recovery", False):
            return
        consumer, now = app.consumer, time.monotonic()
        wanted: dict = {}
        for tp in consumer.assignment():
            recent = now - self.read_back_at.get(tp, -1e9) < 60.0
            patience = STALL_RECHECK_SECONDS if recent else STALL_PATIENCE_SECONDS
            if tp.topic not in self.folds or now - self.quiet_since.setdefault(tp, now) < patience:
                continue
            highwater = consumer.highwater(tp)
            start = self.gaps.next_offset(tp)
            if highwater is None or highwater <= (start or 0):
                continue
            missing = self.gaps.stalled(tp, highwater, start if start is not None else await first_offset(consumer, tp),
                                        now - self.quiet_since[tp], patience)  # fmt: skip
            if missing:
                wanted[tp] = missing[:READ_BACK_MAX_RECORDS]  # memory: the rest at the next check, if still stalled
        if not wanted:
            return
        for tp, missing in wanted.items():
            log.warning(
                "records %d..%d of %s:%d did not reach the agent for %.0fs (faust#596 after a table recovery, or a broker "
                "that answered fetches without them); reading them directly",
                missing.start, missing.stop - 1, tp.topic, tp.partition, now - self.quiet_since[tp],
            )  # fmt: skip
            self.gaps.floors.setdefault(tp, missing.start)
        install_commit_floor(consumer, self.gaps.floors)
        ranges = {(tp.topic, tp.partition): missing for tp, missing in wanted.items()}
        try:
            records = await asyncio.get_running_loop().run_in_executor(None, fetch_ranges, self.settings, ranges)
        except Exception as exc:  # noqa: BLE001 - Kafka away (a broker restart): the next check tries again
            log.warning("reading back %d partitions failed (%s); trying again at the next check", len(ranges), exc)
            return
        for tp, missing in wanted.items():
            found = records[tp.topic, tp.partition]
            self._hole_read(tp, missing, found)
            self.metrics.offset_gaps_repaired.inc()
            async with self.locks.setdefault(tp, asyncio.Lock()):
                for record in found:
                    expected = self.gaps.next_offset(tp)
                    if expected is not None and record.offset < expected:
                        continue  # the agent got it meanwhile
                    refetched = Refetched(tp, record)
                    await self.outbox.room()
                    with as_current_event(refetched):
                        await self.process_one(refetched, self.folds[tp.topic])
                    self.gaps.advance(tp, app.consumer_generation_id, record.offset)
                self.gaps.advance(tp, app.consumer_generation_id, missing.stop - 1)  # and what the log does not hold
            self.quiet_since[tp] = self.read_back_at[tp] = time.monotonic()

    async def _read_back(self, tp, missing: range) -> list:
        """The records of ``missing`` (fetch_range), retried with backoff while Kafka cannot answer:
        the partition waits, as it would for a fetch (the record that revealed the hole waits too)."""
        delay = 0.5
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(None, fetch_range, self.settings, tp.topic, tp.partition, missing)
            except Exception as exc:  # noqa: BLE001 - Kafka away: back-pressure, not a crash
                log.warning("reading back %s:%d offsets %d..%d failed (%s); retrying in %.1fs",
                            tp.topic, tp.partition, missing.start, missing.stop - 1, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    def _hole_read(self, tp, missing: range, found: list) -> None:
        """Commits are held at the first offset of a hole until it is acked; offsets the log does
        not hold (fetch_range skips them) are never acked, so the floor moves to the first record
        read back, or goes when there is none."""
        if self.gaps.floors.get(tp) != missing.start:
            return  # held lower, by an earlier hole
        if not found:
            self.gaps.filled(tp)
        elif found[0].offset > missing.start:
            self.gaps.floors[tp] = found[0].offset

    # -- assignments -----------------------------------------------------------------------------
    def index_assignment(self, topic_name: str, generation: int) -> None:
        """Rebuild a folder's in-memory indexes from the table once per assignment generation."""
        if self.rebuilt.get(topic_name) == generation:
            return
        self.rebuilt[topic_name] = generation
        is_tasks = topic_name == self.settings.topic_task_events
        folder, source = (self.task_folder, self.tables["tasks"]) if is_tasks else (self.worker_folder, self.tables["workers"])
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic_name}
        started = time.perf_counter()
        kept = index_partitions(folder, assigned, source.items())
        self.export_assignment(reload=is_tasks)
        log.info("indexed %d rows of %d partitions of %s in %.2fs", kept, len(assigned), topic_name, time.perf_counter() - started)

    def export_assignment(self, reload: bool = False) -> None:
        """The exporter exports the partitions this worker owns: counts (re)loaded from their
        table when a generation starts, workers and queue samples of revoked partitions dropped."""
        s = self.settings
        assignment = self.app.consumer.assignment()
        owned = {topic: {tp.partition for tp in assignment if tp.topic == topic}
                 for topic in (s.topic_task_events, s.topic_worker_events, s.topic_queue_lengths)}  # fmt: skip
        self.exporter.assign_tasks(owned[s.topic_task_events], self.tables["celery-metrics"].items(), reload=reload)
        self.exporter.keep_workers(owned[s.topic_worker_events])
        self.exporter.drop_queue_partitions(owned[s.topic_queue_lengths])

    def revoked(self, revoked) -> None:
        self.exporter.drop_tasks({tp.partition for tp in revoked if tp.topic == self.settings.topic_task_events})

    # -- timers ------------------------------------------------------------------------------------
    def retire_tasks(self) -> int:
        """Delete finished tasks left alone for STREAMS_TASK_RETENTION from the owned partitions."""
        if self.app.rebalancing:
            return 0
        now, retention = time.time(), self.settings.task_retention
        retired = 0
        for tp in self.app.consumer.assignment():
            if tp.topic != self.settings.topic_task_events:
                continue
            for key in self.task_folder.retire(now, retention, tp.partition):
                self.tables["tasks"].delete_in(tp.partition, key)  # a changelog tombstone: a restart does not bring it back
                retired += 1
        if retired:
            self.metrics.retired.inc(retired)
            log.info("retired %d finished tasks older than %.0fs from the table", retired, retention)
        return retired

    def measure_lag(self) -> None:
        self.metrics.tick()  # /healthz: the event loop runs timers
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic in self.settings.event_topics:
                highwater = consumer.highwater(tp)
                committed = committed_offset(consumer, tp) or 0
                if highwater is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - committed, 0))
        for (partition, cluster), mark in list(self.worker_folder.watermarks.items()):
            self.metrics.watermark.labels(cluster or "", str(partition)).set(mark)
        if not self.app.rebalancing:
            self.export_assignment()  # partitions owned but quiet since the start are exported too
