"""The ClickHouse sink: its own consumer group, insert-then-commit.

Why its own consumer group and not a Faust agent: the sink's contract is
"offsets move only after the INSERT succeeded", batch sizes are set by ClickHouse's needs
(>= 1k rows, ~1 insert/s per table), and while ClickHouse is down the partitions are paused
but the consumer keeps its group membership.  A Faust agent acks events on its own schedule,
so the commit-after-write order would be implicit; here it is the loop itself (as in
Sentry's arroyo/snuba).  ``python -m streams worker`` starts it as its own child process by
default (``streams/sink/child.py``; as a thread it shared the worker's GIL), or it runs alone
as ``python -m streams sink``.

The consumer is librdkafka's (confluent-kafka), like the bridge's producer: kafka-python's
pure-Python fetch and decode took 28 % of the sink's time (make bench-sink), and librdkafka
keeps the group's heartbeats in its own thread while a batch waits for ClickHouse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from ..config import Settings
from ..connections import librdkafka_options
from ..stalls import fetch_ranges
from ..clickhouse import ClickHouseUnavailable, ClickHouseWriter
from ..control.audit import AUDIT_COLUMNS, audit_row
from .rows import EVENT_COLUMNS, QUEUE_LENGTH_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, EventColumns, queue_length_row, task_row, worker_row

UNASSIGNED_WARNING_SECONDS = 60.0
HEALTH_STALE_SECONDS = 120.0
STALL_CHECK_SECONDS = 2.0
STALL_PATIENCE_SECONDS = 6.0  # a partition with records past the expected offset and none delivered for this long
STALL_RECHECK_SECONDS = 2.0  # the same, for a partition read back within the last minute
READ_BACK_MAX_RECORDS = 500  # records read back per stalled partition per check

log = logging.getLogger("streams.sink")

IDLE_WAIT = 0.2  # s: an idle sink waits this long per consume (and then checks for stop)
MAX_RECORDS_PER_CONSUME = 500


class Batch:
    """Rows waiting for their insert: state records as rows per table, events column-wise."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = defaultdict(list)
        self.events = EventColumns()
        self.started = time.monotonic()
        self.records = 0  # Kafka records consumed into it (packs count once)
        self.skipped = 0
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset, committed after the insert

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.rows.values()) + self.events.size

    @property
    def empty(self) -> bool:
        return self.records == 0

    def add(self, table: str, row: tuple | None) -> None:
        self.records += 1
        if row is None:
            self.skipped += 1
            return
        self.rows[table].append(row)

    def add_pack(self, value: bytes) -> None:
        """Raises ValueError when ``value`` is not a pack."""
        self.records += 1
        self.events.add_pack(value)


class _ReadBack:
    """A record read back with fetch_range, shaped like the confluent-kafka messages the sink adds."""

    __slots__ = ("_topic", "_partition", "_offset", "_value")

    def __init__(self, topic: str, partition: int, offset: int, value: bytes):
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None


class Continuity:
    """Per source partition, the next offset the sink must insert: no record may be skipped.

    It starts at the group's committed offset when the partition is assigned and follows every
    record. A record past it means the consumer jumped (a broker that came back from a restart and
    answered a fetch with "out of range", an offset reset): the sink seeks back to the expected
    offset. Only when the same record comes again right after that seek are the offsets between
    taken as not held by the log (compaction, transaction markers) -- the broker answers a fetch
    at a missing offset with the next record. Pure: the consumer acts on its verdicts.
    """

    OK, SEEK, OLD = "ok", "seek", "old"

    def __init__(self) -> None:
        self.expected: dict[tuple[str, int], int] = {}
        self.sought: dict[tuple[str, int], int] = {}  # partition -> the offset last sought back to
        self.progress: dict[tuple[str, int], float] = {}  # partition -> monotonic time of its last record (or assignment)

    def assign(self, tp: tuple[str, int], committed: int | None) -> None:
        """``committed``: the group's committed offset, None when it has none (start anywhere)."""
        self.sought.pop(tp, None)
        self.progress[tp] = time.monotonic()
        if committed is None:
            self.expected.pop(tp, None)
        else:
            self.expected[tp] = committed

    def revoke(self, tp: tuple[str, int]) -> None:
        self.expected.pop(tp, None)
        self.sought.pop(tp, None)
        self.progress.pop(tp, None)

    def check(self, tp: tuple[str, int], offset: int) -> str:
        """OK: take it; SEEK: seek back to ``expected[tp]`` and drop it; OLD: already taken, drop it."""
        expected = self.expected.get(tp)
        if expected is None or offset == expected:
            self.expected[tp] = offset + 1
            self.sought.pop(tp, None)
            self.progress[tp] = time.monotonic()
            return self.OK
        if offset < expected:
            return self.OLD
        if self.sought.get(tp) == expected:  # sought back there and the log gave this record again
            log.warning("sink: %s[%d] holds no records at offsets %d..%d; going on at %d", *tp, expected, offset - 1, offset)
            self.expected[tp] = offset + 1
            self.sought.pop(tp, None)
            return self.OK
        self.sought[tp] = expected
        return self.SEEK


class ClickHouseSink:
    TABLES = {"tasks": TASK_COLUMNS, "workers": WORKER_COLUMNS, "events": EVENT_COLUMNS, "queue_lengths": QUEUE_LENGTH_COLUMNS,
              "audit": AUDIT_COLUMNS}  # fmt: skip

    def __init__(self, settings: Settings, writer: ClickHouseWriter | None = None):
        self.settings = settings
        self.writer = writer
        self.routes = {
            settings.topic_task_states: ("tasks", task_row),
            settings.topic_worker_states: ("workers", worker_row),
            settings.topic_task_events: ("events", None),  # packs: EventColumns
            settings.topic_worker_events: ("events", None),
            settings.topic_queue_lengths: ("queue_lengths", queue_length_row),
            settings.topic_audit: ("audit", audit_row),
        }
        self._stop = threading.Event()
        self.continuity = Continuity()
        self._last_stall_check = 0.0
        self._read_back_at: dict[tuple[str, int], float] = {}
        self._last_insert = -1e9
        self.last_loop: float | None = None  # monotonic time the loop last went round (/healthz)
        self.consumer: Consumer | None = None
        self.inserted = defaultdict(int)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def health(self) -> tuple[int, dict]:
        """503 until the loop first went round and when it has not for HEALTH_STALE_SECONDS; waiting
        for ClickHouse to come back counts as going round (a restart would not help)."""
        if self.last_loop is None:
            return 503, {"status": "starting"}
        age = time.monotonic() - self.last_loop
        status = 200 if age <= HEALTH_STALE_SECONDS else 503
        return status, {"status": "ok" if status == 200 else "stuck", "seconds_since_loop": round(age, 1),
                        "inserted": dict(self.inserted)}  # fmt: skip

    def serve_health(self):
        """/healthz and /metrics (rows inserted per table) on SINK_METRICS_ADDR; None when off.
        Raises streams.listen.SettingError when the address is taken."""
        from ..listen import serve_http

        def health():
            status, payload = self.health()
            return status, orjson.dumps(payload), "application/json"

        def metrics():
            lines = ["# TYPE sink_rows_inserted_total counter"]
            lines += [f'sink_rows_inserted_total{{table="{t}"}} {n}' for t, n in sorted(self.inserted.items())]
            return 200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4"

        return serve_http(self.settings.sink_metrics_addr, "sink_metrics_addr", {"/healthz": health, "/metrics": metrics}, name="sink-health")

    def _connect(self) -> None:
        s = self.settings
        session_ms = int(s.group_session_timeout * 1000)
        self.consumer = Consumer({
            **librdkafka_options(s),
            "group.id": s.sink_group,
            "client.id": f"{s.sink_group}-{id(self):x}",
            "enable.auto.commit": False,  # commit after write, and only then
            "enable.auto.offset.store": False,  # commits name their offsets: those of the inserted batch
            # Never jump to another offset on its own: an "out of range" answer (a broker coming back
            # from a restart can give one) is reported to the sink, which decides (_offset_reset).
            "auto.offset.reset": "error",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": min(3000, max(300, session_ms // 6)),
            "max.poll.interval.ms": 600_000,
            # Tansu answers a Fetch only when its max-wait runs out; Kafka as soon as data arrives
            **({"fetch.wait.max.ms": 100} if s.tansu_fixes else {}),
        })  # fmt: skip
        self.consumer.subscribe(list(self.routes), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        if self.writer is None:
            self.writer = ClickHouseWriter(s)

    def run(self) -> None:
        """Until stopped: collect a batch while the previous one is being inserted (in a thread:
        the driver waits for ClickHouse without the GIL), then finish that insert and commit its
        offsets, then start inserting the new batch. At most two batches are held; offsets only
        ever move past rows that are in ClickHouse."""
        self._connect()
        log.info("sink started: topics=%s group=%s", list(self.routes), self.settings.sink_group)
        writing: tuple[Batch, Future] | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert") as inserts:
                unassigned_since, warned_at = time.monotonic(), 0.0
                while not self._stop.is_set():
                    batch = self._collect()
                    self._repair_stalls(batch)
                    now = self.last_loop = time.monotonic()
                    if self.consumer.assignment():
                        unassigned_since = now
                    elif now - unassigned_since > UNASSIGNED_WARNING_SECONDS and now - warned_at > UNASSIGNED_WARNING_SECONDS:
                        warned_at = now  # an idle member of a larger group is fine; a group that never assigns is not
                        log.warning(
                            "sink: no partition assigned for %.0f s (group %s): the other members hold them all, or the "
                            "broker's group coordinator is stuck (seen with Tansu after a member was killed); rows wait "
                            "in Kafka. A sink with a new SINK_GROUP re-reads everything (inserts are idempotent).",
                            now - unassigned_since, self.settings.sink_group,
                        )  # fmt: skip
                    if writing is not None:
                        self._finish(*writing, late=batch)
                        writing = None
                    if not batch.empty:
                        self._last_insert = time.monotonic()
                        writing = (batch, inserts.submit(self._write, batch))
                if writing is not None:
                    self._finish(*writing, late=None)
        finally:
            self.consumer.close()  # leaves the group; commits nothing (auto commit is off)
            log.info("sink stopped: inserted=%s", dict(self.inserted))

    def _finish(self, batch: Batch, write: Future, late: Batch | None) -> None:
        """Wait for an insert started in the background; retry it here while ClickHouse is
        unavailable (records that still arrive join ``late``, the newer batch); then commit."""
        try:
            write.result()
        except ClickHouseUnavailable:
            self._insert(batch, late=late)
        self._commit(batch)

    # -- one batch: poll while records keep coming (up to full or old enough), insert, commit -----
    def run_once(self) -> int:
        """One batch, start to end: collect, insert, commit (run() overlaps them)."""
        batch = self._collect()
        if batch.empty:
            return 0
        size = batch.size
        self._insert(batch)
        self._last_insert = time.monotonic()
        self._commit(batch)
        return size

    def _collect(self) -> Batch:
        """One batch. Waits up to IDLE_WAIT for a first record; then takes only what is
        immediately available (a quiet pipeline inserts at once, a busy one fills batches by
        itself while the previous insert runs), up to SINK_BATCH_ROWS or SINK_BATCH_SECONDS, and
        no sooner than SINK_MIN_INSERT_INTERVAL after the previous insert (ClickHouse makes a part
        per insert and wants few of them)."""
        s = self.settings
        batch = Batch()
        consume = self.consumer.consume
        while (size := batch.size) < s.sink_batch_rows and not self._stop.is_set():
            left = s.sink_batch_seconds - (time.monotonic() - batch.started)
            if left <= 0:
                break
            # Records to ask for: a pack holds many rows, so aim at the rows left, not more.
            want = max(1, min(MAX_RECORDS_PER_CONSUME, (s.sink_batch_rows - size) * batch.records // max(size, 1) or MAX_RECORDS_PER_CONSUME))
            if batch.empty:
                # poll() returns with the first record; consume() would wait for `want` of them
                first = self.consumer.poll(min(left, IDLE_WAIT))
                if first is None:
                    continue
                batch.started = time.monotonic()  # the bounds count from the first record
                messages = [first, *consume(num_messages=want, timeout=0)]
            else:
                messages = consume(num_messages=want, timeout=0)
                if not messages:
                    pace = self._last_insert + s.sink_min_insert_interval - time.monotonic()
                    if pace <= 0:
                        break  # nothing more right now: insert at once
                    messages = consume(num_messages=want, timeout=min(pace, left))
            self._add(batch, messages)
        return batch

    def _add(self, batch: Batch, messages) -> None:
        routes, offsets, check = self.routes, batch.offsets, self.continuity.check
        rewound: set = set()  # partitions sought back in this call: their later records come again
        for message in messages:
            if message.error():
                if message.error().code() == KafkaError._AUTO_OFFSET_RESET:
                    self._offset_reset(message)
                else:
                    self._consumer_error(message.error())
                continue
            topic = message.topic()
            tp = (topic, message.partition())
            if tp in rewound:
                continue
            verdict = check(tp, message.offset())
            if verdict != Continuity.OK:
                if verdict == Continuity.SEEK:
                    expected = self.continuity.expected[tp]
                    log.warning("sink: %s[%d] jumped from offset %d to %d; reading from %d again", *tp, expected, message.offset(), expected)
                    self.consumer.seek(TopicPartition(topic, tp[1], expected))
                    rewound.add(tp)
                continue
            offsets[tp] = message.offset() + 1
            table, to_row = routes[topic]
            if to_row is None:
                try:
                    batch.add_pack(message.value())
                except ValueError as exc:
                    # Only the bridge writes these topics; a bad record is a bug upstream.
                    batch.skipped += 1
                    log.error("sink: %s[%d]@%d skipped: %s", message.topic(), message.partition(), message.offset(), exc)
            else:
                batch.add(table, self._row(to_row, message))

    def _commit(self, batch: Batch) -> None:
        """Commit the offsets after the batch's records (they are in ClickHouse), and no others:
        the next batch may already be consumed, not yet inserted."""
        if not batch.offsets:
            return
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in batch.offsets.items()]
        try:
            answers = self.consumer.commit(offsets=offsets, asynchronous=False) or []
        except KafkaException as exc:
            # A rebalance took the partitions: their new owner re-reads and re-inserts the same
            # rows, which the ReplacingMergeTree keys make harmless.
            log.warning("sink: commit after insert failed (%s); rows will be re-read and deduplicated", exc)
            return
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in answers if tp.error is not None]
        if failed:
            log.warning("sink: commit after insert refused for %s; those rows will be re-read and deduplicated", ", ".join(failed))

    def _repair_stalls(self, batch: Batch) -> None:
        """Records the broker holds but does not hand this consumer (seen with a broker coming back
        from a restart: fetches answered empty for minutes while the records were there) are read
        with a consumer of their own (one for every stalled partition) and added to the batch; the
        consumer is then moved past them. A partition counts as stalled when the log's end is past
        the next expected offset and no record of it came for STALL_PATIENCE_SECONDS
        (STALL_RECHECK_SECONDS when it was read back within the last minute: such a broker keeps
        not handing records for minutes)."""
        now = time.monotonic()
        if now - self._last_stall_check < STALL_CHECK_SECONDS:
            return
        self._last_stall_check = now
        quiet = {}
        for tp in self.continuity.expected:
            patience = STALL_RECHECK_SECONDS if now - self._read_back_at.get(tp, -1e9) < 60.0 else STALL_PATIENCE_SECONDS
            if now - self.continuity.progress.get(tp, now) >= patience:
                quiet[tp] = now - self.continuity.progress.get(tp, now)
        if not quiet:
            return
        highs = self._log_ends(list(quiet))
        wanted: dict[tuple[str, int], range] = {}
        for tp, seconds in quiet.items():
            expected, high = self.continuity.expected[tp], highs.get(tp)
            if high is None:
                continue  # no answer now: not judged this time
            if high <= expected:
                self.continuity.progress[tp] = now  # caught up: nothing missing
                continue
            wanted[tp] = range(expected, min(high, expected + READ_BACK_MAX_RECORDS))
            log.warning("sink: %s[%d] offsets %d..%d held by the broker but not delivered for %.0fs; reading them directly",
                        *tp, wanted[tp].start, wanted[tp].stop - 1, seconds)  # fmt: skip
        if not wanted:
            return
        try:
            records = fetch_ranges(self.settings, wanted)
        except Exception as exc:  # noqa: BLE001 - Kafka away: the next check tries again
            log.warning("sink: reading back %d partitions failed (%s); trying again", len(wanted), exc)
            return
        for tp, missing in wanted.items():
            for r in records[tp]:
                # fetch_ranges skips only offsets the log does not hold: a hole before a record it
                # found (a broker restarted mid-produce) is no jump to seek back over -- taken as
                # one, the records after it were dropped while the expected offset moved past them.
                if r.offset > self.continuity.expected[tp]:
                    log.warning("sink: %s[%d] holds no records at offsets %d..%d (read back); going on at %d",
                                *tp, self.continuity.expected[tp], r.offset - 1, r.offset)  # fmt: skip
                    self.continuity.expected[tp] = r.offset
                self._add(batch, [_ReadBack(tp[0], tp[1], r.offset, r.value)])
            self.continuity.expected[tp] = max(self.continuity.expected[tp], missing.stop)
            self._read_back_at[tp] = now
            try:
                self.consumer.seek(TopicPartition(tp[0], tp[1], self.continuity.expected[tp]))
            except KafkaException as exc:
                log.debug("seek after read-back: %s", exc)

    def _log_ends(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Each partition's log end offset, where the broker answers."""
        if self.settings.tansu_fixes:  # Tansu's ListOffsets answer is wrong (streams.tansu)
            from ..tansu import fetch_highwaters

            try:
                answers = fetch_highwaters(self.settings.kafka_bootstrap.split(","), [TopicPartition(*tp) for tp in tps], partial=True)
            except Exception as exc:  # noqa: BLE001 - no answer now: not judged this time
                log.debug("high watermarks: %s", exc)
                return {}
            return {(tp.topic, tp.partition): high for tp, high in answers.items()}
        highs = {}
        for tp in tps:
            try:
                highs[tp] = self.consumer.get_watermark_offsets(TopicPartition(*tp), timeout=5)[1]
            except Exception as exc:  # noqa: BLE001 - no answer now: not judged this time
                log.debug("high watermark of %s: %s", tp, exc)
        return highs

    def _on_assign(self, consumer, partitions) -> None:
        """Each partition resumes at the group's committed offset, or -- a new group -- at the
        first offset the log holds (OFFSET_BEGINNING: with auto.offset.reset=error nothing else
        would say where)."""
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=30)}
        start = []
        for tp in partitions:
            offset = committed.get((tp.topic, tp.partition), -1001)
            self.continuity.assign((tp.topic, tp.partition), offset if offset >= 0 else None)
            start.append(TopicPartition(tp.topic, tp.partition, offset if offset >= 0 else OFFSET_BEGINNING))
        consumer.assign(start)
        log.info("sink: partitions assigned: %d", len(partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            self.continuity.revoke((tp.topic, tp.partition))

    def _offset_reset(self, message) -> None:
        """The broker answered "out of range" for where the sink reads: records it never read
        were deleted (retention ran while the sink was behind) -- go on at the first offset held,
        and say how many were lost -- or the broker is confused for a moment (coming back from a
        restart) -- read the same offset again."""
        tp = (message.topic(), message.partition())
        expected = self.continuity.expected.get(tp)
        low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)
        if expected is None or expected < low:
            if expected is not None:
                log.error("sink: %s[%d] records %d..%d were deleted by the topic's retention before the sink read them; "
                          "going on at %d", *tp, expected, low - 1, low)  # fmt: skip
                self.continuity.expected[tp] = low
            target = low
        else:
            log.warning("sink: %s[%d] offset %d out of range for the broker (%d..%d held); reading it again", *tp, expected, low, high - 1)
            time.sleep(0.5)
            target = expected
        self.consumer.seek(TopicPartition(tp[0], tp[1], target))

    @staticmethod
    def _consumer_error(error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        # librdkafka retries transient errors itself (broker down, partition leader moving).
        log.warning("sink: Kafka consumer: %s (librdkafka retries; check Kafka at KAFKA_BOOTSTRAP if it repeats)", error)

    @staticmethod
    def _row(to_row, message) -> tuple | None:
        try:
            return to_row(orjson.loads(message.value()))
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            # Only the pipeline's own records reach this consumer; a bad one is a bug upstream.
            log.error("sink: unusable record %s[%d]@%d skipped: %s", message.topic(), message.partition(), message.offset(), exc)
            return None

    def _write(self, batch: Batch) -> None:
        """Insert every table of the batch once (raises ClickHouseUnavailable); a table that is
        in leaves the batch, so a retry inserts only the rest."""
        for table in list(batch.rows):
            self.inserted[table] += self.writer.insert(table, self.TABLES[table], batch.rows[table])
            del batch.rows[table]
        if batch.events.size:
            self.inserted["events"] += self.writer.insert_columns("events", EVENT_COLUMNS, batch.events.columns)
            batch.events = EventColumns()

    def _insert(self, batch: Batch, late: Batch | None = None) -> None:
        """Insert the batch, retrying with backoff while ClickHouse is unavailable."""
        paused = False
        size = batch.size

        def keep_membership_while_waiting(seconds: float) -> None:
            # Back-pressure: no new records are fetched (partitions paused) but polling keeps
            # the group membership, so the batch is retried instead of rebalanced away.
            nonlocal paused
            if not paused:
                self.consumer.pause(self.consumer.assignment())
                paused = True
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                self.last_loop = time.monotonic()  # waiting for ClickHouse is not being stuck (/healthz)
                # Paused partitions return nothing; should a message fetched before the pause
                # still come, it is consumed (its offset will be committed), so it joins the
                # newest batch (committed last).
                self._add(late or batch, self.consumer.consume(num_messages=100, timeout=0.2))

        retrying = Retrying(
            wait=wait_exponential(multiplier=0.5, max=15),
            retry=retry_if_exception_type(ClickHouseUnavailable),
            sleep=keep_membership_while_waiting,
            before_sleep=lambda st: log.warning(
                "sink: ClickHouse unavailable (%s); holding %d rows, retry %d in %.1fs (CLICKHOUSE_HOST %s, CLICKHOUSE_PORT %s)",
                st.outcome.exception(), size, st.attempt_number, st.next_action.sleep,
                self.settings.clickhouse_host, self.settings.clickhouse_port,
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if self._stop.is_set() and attempt.retry_state.attempt_number > 1:
                    raise SystemExit("sink stopping with an unwritten batch; offsets not committed, it will be re-read")
                self._write(batch)
        if paused:
            self.consumer.resume(self.consumer.assignment())
            log.info("sink: ClickHouse is back; batch of %d rows written", size)
        if batch.events.skipped:
            log.warning("sink: %d events not stored: not an object with a timestamp in DateTime's range "
                        "(the streams worker dead-letters them with the reason)", batch.events.skipped)
