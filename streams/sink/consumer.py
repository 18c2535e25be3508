"""The ClickHouse sink: its own consumer group, insert-then-commit.

Why its own consumer group and not a Faust agent: the sink's contract is
"offsets move only after the INSERT succeeded", batch sizes are set by ClickHouse's needs
(>= 1k rows, ~1 insert/s per table), and while ClickHouse is down the partitions are paused
but the consumer keeps its group membership.  A Faust agent acks events on its own schedule,
so the commit-after-write order would be implicit; here it is the loop itself (as in
Sentry's arroyo/snuba).  It still runs inside ``python -m streams worker`` by default (a
thread), or alone as ``python -m streams sink``.

The consumer is librdkafka's (confluent-kafka), like the bridge's producer: kafka-python's
pure-Python fetch and decode took 28 % of the sink's time (make bench-sink), and librdkafka
keeps the group's heartbeats in its own thread while a batch waits for ClickHouse.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from ..config import Settings
from .clickhouse import ClickHouseUnavailable, ClickHouseWriter
from .rows import EVENT_COLUMNS, QUEUE_LENGTH_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, event_row, queue_length_row, task_row, worker_row

log = logging.getLogger("streams.sink")


class Batch:
    """Rows waiting for their insert, per table."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = defaultdict(list)
        self.started = time.monotonic()
        self.size = 0
        self.skipped = 0

    def add(self, table: str, row: tuple | None) -> None:
        if row is None:
            self.skipped += 1
            return
        self.rows[table].append(row)
        self.size += 1


class ClickHouseSink:
    TABLES = {"tasks": TASK_COLUMNS, "workers": WORKER_COLUMNS, "events": EVENT_COLUMNS, "queue_lengths": QUEUE_LENGTH_COLUMNS}

    def __init__(self, settings: Settings, writer: ClickHouseWriter | None = None):
        self.settings = settings
        self.writer = writer
        self.routes = {
            settings.topic_task_states: ("tasks", task_row),
            settings.topic_worker_states: ("workers", worker_row),
            settings.topic_task_events: ("events", event_row),
            settings.topic_worker_events: ("events", event_row),
            settings.topic_queue_lengths: ("queue_lengths", queue_length_row),
        }
        self._stop = threading.Event()
        self.consumer: Consumer | None = None
        self.inserted = defaultdict(int)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _connect(self) -> None:
        s = self.settings
        session_ms = int(s.session_timeout * 1000)
        self.consumer = Consumer({
            **s.librdkafka_options(),
            "group.id": s.sink_group,
            "client.id": f"{s.sink_group}-{id(self):x}",
            "enable.auto.commit": False,  # commit after write, and only then
            "enable.auto.offset.store": True,  # what consume() returned is what commit() commits
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(300, session_ms // 6),
            "max.poll.interval.ms": 600_000,
            "fetch.wait.max.ms": 100,  # the sink's batches are time-bounded; don't add half a second per hop
        })  # fmt: skip
        self.consumer.subscribe(list(self.routes))
        if self.writer is None:
            self.writer = ClickHouseWriter(s)

    def run(self) -> None:
        self._connect()
        log.info("sink started: topics=%s group=%s", list(self.routes), self.settings.sink_group)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.consumer.close()  # leaves the group; commits nothing (auto commit is off)
            log.info("sink stopped: inserted=%s", dict(self.inserted))

    # -- one batch: poll until full or old enough, insert, commit ---------------------------------
    def run_once(self) -> int:
        s = self.settings
        batch = Batch()
        while batch.size < s.sink_batch_rows and not self._stop.is_set():
            left = s.sink_batch_seconds - (time.monotonic() - batch.started)
            if left <= 0:
                break
            self._add(batch, self.consumer.consume(num_messages=s.sink_batch_rows - batch.size, timeout=left))
        if batch.size == 0 and batch.skipped == 0:
            return 0
        self._insert(batch)
        self._commit()
        return batch.size

    def _add(self, batch: Batch, messages) -> None:
        for message in messages:
            if message.error():
                self._consumer_error(message.error())
                continue
            table, to_row = self.routes[message.topic()]
            batch.add(table, self._row(to_row, message))

    def _commit(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)  # everything consumed is now in ClickHouse
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return  # the batch held only skipped records already committed
            # A rebalance took the partitions: their new owner re-reads and re-inserts the same
            # rows, which the ReplacingMergeTree keys make harmless.
            log.warning("sink: commit after insert failed (%s); rows will be re-read and deduplicated", exc)

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

    def _insert(self, batch: Batch) -> None:
        paused = False

        def keep_membership_while_waiting(seconds: float) -> None:
            # Back-pressure: no new records are fetched (partitions paused) but polling keeps
            # the group membership, so the batch is retried instead of rebalanced away.
            nonlocal paused
            if not paused:
                self.consumer.pause(self.consumer.assignment())
                paused = True
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                # Paused partitions return nothing; should a message fetched before the pause
                # still come, it is consumed (its offset will be committed), so it joins the batch.
                self._add(batch, self.consumer.consume(num_messages=100, timeout=0.2))

        retrying = Retrying(
            wait=wait_exponential(multiplier=0.5, max=15),
            retry=retry_if_exception_type(ClickHouseUnavailable),
            sleep=keep_membership_while_waiting,
            before_sleep=lambda st: log.warning(
                "sink: ClickHouse unavailable (%s); holding %d rows, retry %d in %.1fs. "
                "Check that ClickHouse runs at %s:%s (make status).",
                st.outcome.exception(), batch.size, st.attempt_number, st.next_action.sleep,
                self.settings.clickhouse_host, self.settings.clickhouse_port,
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if self._stop.is_set() and attempt.retry_state.attempt_number > 1:
                    raise SystemExit("sink stopping with an unwritten batch; offsets not committed, it will be re-read")
                for table, rows in batch.rows.items():
                    self.inserted[table] += self.writer.insert(table, self.TABLES[table], rows)
        if paused:
            self.consumer.resume(self.consumer.assignment())
            log.info("sink: ClickHouse is back; batch of %d rows written", batch.size)
