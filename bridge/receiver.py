"""The broker adapter of the bridge: the only module that talks kombu.

AMQP: a named durable queue bound to the event exchange (Celery's ``event_exchange``, ``celeryev``
unless the cluster changed it: BRIDGE_EVENT_EXCHANGE) with ``#`` keeps events while the bridge is
down (bounded by x-max-length / x-message-ttl); messages are acked only after Kafka acknowledged
every pack holding their events, so a killed bridge loses nothing (redelivered duplicates, packed
differently, are harmless downstream).
Redis: the event exchange is a PUB/SUB fanout (channel ``/{db}.<exchange>``); nothing can be acked or
replayed there.

Batching waits only under load: a batch is flushed as soon as no further message is immediately
available — at once on a quiet broker — but no sooner than BRIDGE_MIN_FLUSH_INTERVAL after the
previous flush (a busy broker: fewer, larger Kafka requests), and at the latest at
BRIDGE_BATCH_SIZE messages / BRIDGE_BATCH_BYTES / BRIDGE_BATCH_SECONDS.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter

import orjson
from celery.events.event import get_exchange
from kombu import Connection, Queue
from kombu.compression import decompress
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from streams.config import Settings, mask_url

from .envelope import DEAD, STATUS, TASK, WORKER, Enveloper, Routed, topics_by_kind
from .gaps import GapDetector
from .metrics import BridgeMetrics
from .packs import Packer
from .producer import MESSAGE_MAX_BYTES, KafkaEventProducer, KafkaUnavailable
from .progress import Progress

log = logging.getLogger("bridge.receiver")

IDLE_WAIT = 0.1  # s: an idle consumer waits this long per round (read_until stays this fresh)
LINGER_WAIT = 0.0005  # s: "immediately available" — a batch grows only while messages keep coming


class BrokerReceiver:
    def __init__(
        self,
        settings: Settings,
        enveloper: Enveloper,
        producer: KafkaEventProducer,
        metrics: BridgeMetrics | None = None,
        transport_options: dict | None = None,
        ssl: bool | dict = False,
    ):
        self.settings = settings
        self.transport_options = transport_options or {}
        self.ssl = ssl
        self.enveloper = enveloper
        self.producer = producer
        self.packer = Packer(settings.cluster, enveloper.bridge_id, settings.bridge_pack_max_bytes, MESSAGE_MAX_BYTES - 1024)
        self.progress = Progress(settings.bridge_tick_seconds, IDLE_WAIT)
        self.metrics = metrics or BridgeMetrics()
        self.topics = topics_by_kind(settings)
        self.last_message_at: float | None = None
        self.lost: tuple[float | None, str] | None = None  # (last message before, why) of a lost connection
        self.pending: list = []  # (message, received_at) not yet in Kafka
        self.pending_bytes = 0  # their bodies' size
        self.stopping = False
        self.counts = {"messages": 0, "events": 0, "packs": 0, "batches": 0}

    def stop(self) -> None:
        self.stopping = True

    def _queue(self, conn: Connection) -> tuple[Queue, bool]:
        # topic on AMQP, fanout on Redis, named as the workers' event_exchange (as Celery's own receiver)
        exchange = get_exchange(conn, self.settings.bridge_event_exchange)
        if exchange.type == "topic":
            s = self.settings
            return Queue(
                s.bridge_queue_name,
                exchange=exchange,
                routing_key="#",
                durable=True,
                auto_delete=False,
                queue_arguments={"x-max-length": s.bridge_queue_max_length, "x-message-ttl": s.bridge_queue_ttl_ms},
            ), True
        return Queue(f"celery-monitor.bridge.{self.settings.cluster}", exchange=exchange, routing_key="#", auto_delete=True), False

    def run(self) -> None:
        url = self.settings.broker_url
        try:
            for attempt in Retrying(
                wait=wait_exponential(multiplier=0.5, max=30),
                retry=lambda state: state.outcome.failed and not self.stopping,
                before_sleep=self._on_broker_lost,
                sleep=self._nap,
            ):
                with attempt:
                    self._consume(url)
        except KafkaUnavailable:
            if not self.stopping:
                raise
            # Nothing was acked past Kafka's last acknowledgement: the broker redelivers the rest.
            log.warning("stopped while Kafka was unavailable; %d broker messages left unacknowledged for redelivery", len(self.pending))

    def _nap(self, seconds: float) -> None:
        """A retry's wait, cut short when the bridge is told to stop."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _on_broker_lost(self, state) -> None:
        self.metrics.broker_reconnects.labels(self.settings.cluster).inc()
        if self.lost is None:
            self.lost = (self.last_message_at, repr(state.outcome.exception()))
        log.warning(
            "broker connection lost (%s); reconnecting to %s in %.1fs",
            state.outcome.exception(), mask_url(self.settings.broker_url), state.next_action.sleep,
        )

    def _consume(self, url: str) -> None:
        with Connection(url, connect_timeout=10, transport_options=self.transport_options, ssl=self.ssl) as conn:
            conn.ensure_connection(max_retries=1)
            queue, acks = self._queue(conn)
            log.info("consuming Celery events: broker=%s exchange=%s queue=%s acks=%s cluster=%s",
                     mask_url(url), queue.exchange.name, queue.name, acks, self.settings.cluster)  # fmt: skip
            self.pending, self.pending_bytes = [], 0  # unacked messages of a lost connection come back by redelivery
            if not acks:
                # Redis pub/sub: what was published while we were away is gone; say so.
                if self.enveloper.gaps is None:
                    self.enveloper.gaps = GapDetector(self.settings.cluster, self.enveloper.bridge_id)
                if self.lost is not None:
                    record = self.enveloper.gaps.on_disconnect(self.lost[0], time.time(), self.lost[1])
                    log.warning("events lost while disconnected from %s: %s", mask_url(url), record)
                    self._send([self.enveloper.status(record)])
                    self.metrics.gaps.labels(self.settings.cluster, record["gap"]).inc()
            self.lost = None
            # prefetch must be set before basic.consume: RabbitMQ applies a per-consumer qos only
            # to consumers started after it (set later, the whole queue was delivered at once).
            prefetch = self.settings.bridge_prefetch if acks else None
            with conn.Consumer(queue, on_message=self._on_message, no_ack=not acks, prefetch_count=prefetch):
                self.progress.connect(time.time())
                try:
                    self._loop(conn, queue, acks)
                finally:
                    self.progress.disconnect()

    def _loop(self, conn: Connection, queue: Queue, acks: bool) -> None:
        s, progress = self.settings, self.progress
        batch_started = last_flush = time.monotonic()
        while not self.stopping:
            self.metrics.tick(s.cluster)
            if self.pending:
                now = time.monotonic()
                if len(self.pending) < s.bridge_batch_size and self.pending_bytes < s.bridge_batch_bytes and now - batch_started < s.bridge_batch_seconds:
                    # Take what is immediately available; after a recent flush (a busy broker),
                    # also wait out BRIDGE_MIN_FLUSH_INTERVAL for more.
                    pace = min(last_flush + s.bridge_min_flush_interval, batch_started + s.bridge_batch_seconds) - now
                    waited_from = time.time()
                    try:
                        conn.drain_events(timeout=max(LINGER_WAIT, pace))
                        continue
                    except socket.timeout:
                        if not acks:  # pub/sub: nothing left to read, everything published before is in
                            progress.caught_up(waited_from)
                self._flush(acks)
                last_flush = time.monotonic()
                if acks and progress.sample_due(time.time()):
                    self._sample(conn, queue)
            else:
                started = time.time()
                try:
                    conn.drain_events(timeout=min(IDLE_WAIT, max(progress.until_tick(started), 0.001)))
                    batch_started = time.monotonic()
                except socket.timeout:
                    if acks:
                        progress.idle_wait_ended(started, unacked=len(self.pending))
                    else:
                        progress.caught_up(started)
            self._tick(acks)
        if self.pending:
            self._flush(acks)

    def _sample(self, conn: Connection, queue: Queue) -> None:
        """Ask the broker how many messages wait in our queue (a busy consumer is never idle)."""
        asked_at = time.time()
        # Deliveries dispatched before the answer arrive first on this channel (and land in
        # self.pending, to be packed with the next flush): 0 means everything before asked_at is ours.
        _, ready, _ = conn.default_channel.queue_declare(queue=queue.name, passive=True)
        self.progress.sampled(asked_at, ready)

    def _on_message(self, message) -> None:
        self.last_message_at = time.time()
        self.pending.append((message, self.last_message_at))
        self.pending_bytes += len(message.body)
        self.metrics.in_flight.labels(self.settings.cluster).set(len(self.pending))

    def _flush(self, acks: bool) -> None:
        entries, side = [], []
        for message, received_at in self.pending:
            body = message.body
            compression = (message.headers or {}).get("compression")
            if compression:
                try:
                    body = decompress(body, compression)
                except Exception as exc:  # noqa: BLE001 - a hostile or corrupt header: that message's dead letter, not a stuck queue
                    side.append(self.enveloper.dead(f"body cannot be decompressed as {str(compression)[:100]!r}: {exc}", body,
                                                    message.delivery_info.get("routing_key")))  # fmt: skip
                    continue
            for item in self.enveloper.wrap(body, message.delivery_info.get("routing_key"), received_at):
                (side if item.__class__ is Routed else entries).append(item)
        cluster = self.settings.cluster
        by_kind = Counter(entry.kind for entry in entries)  # metrics per batch, not per event
        for kind, count in by_kind.items():
            self.metrics.events_in.labels(cluster, kind).inc(count)
        records = self._send_entries(entries, side)
        out = Counter(record.kind for record in records)
        for kind, count in out.items():
            self.metrics.records_out.labels(cluster, self.topics[kind]).inc(count)
        for kind, count in by_kind.items():
            self.metrics.events_out.labels(cluster, self.topics[kind]).inc(count)
        self.metrics.dead_letters.labels(cluster).inc(out.get(DEAD, 0))
        if out.get(STATUS):  # rare: a heartbeat gap found in this batch
            for record in records:
                if record.kind == STATUS:
                    self.metrics.gaps.labels(cluster, orjson.loads(record.value)["gap"]).inc()
        self.progress.packed({r.partition for r in records if r.kind == WORKER}, time.time())
        if acks:
            self.pending[-1][0].ack(multiple=True)  # every message up to this one is in Kafka
            self.progress.acked(time.time())
            self.metrics.broker_acks.labels(cluster).inc(len(self.pending))
        self.metrics.in_flight.labels(cluster).set(0)
        self.counts["messages"] += len(self.pending)
        self.counts["events"] += len(entries)
        self.counts["packs"] += out.get(TASK, 0) + out.get(WORKER, 0)
        self.counts["batches"] += 1
        self.pending, self.pending_bytes = [], 0

    def _send_entries(self, entries: list, side: list[Routed]) -> list[Routed]:
        """Pack and send one flush; returns the records Kafka acknowledged."""
        box: dict = {}

        def records() -> list[Routed]:
            # Packed inside the retry: the partition counts come from Kafka's metadata.
            if "records" not in box:
                packs, dead = self.packer.pack(entries, self.progress.read_until, self.producer.partitions)
                box["records"] = packs + dead + side
            return box["records"]

        def repack(refused: list[Routed], max_bytes: int | None) -> list[Routed]:
            packs, dead = self.packer.repack(refused, self.progress.read_until, self.producer.partitions, max_bytes)
            box.setdefault("refused", set()).update(id(r) for r in refused)
            box.setdefault("extra", []).extend(packs + dead)
            return packs + dead

        self._send(records, repack)
        refused = box.get("refused", ())
        return [r for r in box["records"] + box.get("extra", []) if id(r) not in refused]

    def _tick(self, acks: bool) -> None:
        now = time.time()
        if not self.progress.connected or now < (self.progress.next_tick or 0):
            return
        box: dict = {}

        def records() -> list[Routed]:
            if "records" not in box:
                due = self.progress.due_ticks(now, self.producer.partitions(WORKER))
                box["records"] = [self.packer.empty(p, self.progress.read_until) for p in due]
            return box["records"]

        self._send(records)
        if box["records"]:
            self.metrics.records_out.labels(self.settings.cluster, self.topics[WORKER]).inc(len(box["records"]))

    def _send(self, records, repack=None) -> None:
        """Back-pressure: while Kafka is down we neither ack nor consume; RabbitMQ keeps the rest."""
        build = records if callable(records) else (lambda: records)
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.5, max=30),
            retry=retry_if_exception_type(KafkaUnavailable),
            stop=lambda state: self.stopping,  # a stop gives up: nothing unacknowledged by Kafka is acked
            reraise=True,
            before_sleep=lambda st: self._on_kafka_down(st),
            sleep=self._nap,
        ):
            with attempt:
                batch = build()
                if batch:
                    self.producer.send_all(batch, repack)

    def _on_kafka_down(self, state) -> None:
        self.metrics.kafka_errors.labels(self.settings.cluster).inc()
        self.metrics.tick(self.settings.cluster)  # waiting on Kafka is not being stuck
        log.warning(
            "Kafka unavailable (%s); holding %d broker messages, retry %d in %.1fs (KAFKA_BOOTSTRAP=%s)",
            state.outcome.exception(), len(self.pending), state.attempt_number, state.next_action.sleep, self.settings.kafka_bootstrap,
        )
