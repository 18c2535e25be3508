"""The broker adapter of the bridge: the only module that talks kombu.

AMQP: a named durable queue bound to ``celeryev`` with ``#`` keeps events while the bridge is
down (bounded by x-max-length / x-message-ttl); messages are acked only after Kafka
acknowledged every event they carried, so a killed bridge loses nothing (redelivered
duplicates are harmless downstream).
Redis: ``celeryev`` is a PUB/SUB fanout; nothing can be acked or replayed there.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from typing import Callable

import orjson
from celery.events.event import get_exchange
from kombu import Connection, Queue
from kombu.compression import decompress
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from streams.config import Settings, mask_url

from .envelope import DEAD, STATUS, Enveloper, Routed, topics_by_kind
from .gaps import GapDetector
from .metrics import BridgeMetrics
from .producer import KafkaUnavailable

log = logging.getLogger("bridge.receiver")


class BrokerReceiver:
    def __init__(
        self,
        settings: Settings,
        enveloper: Enveloper,
        send_all: Callable[[list[Routed]], None],
        metrics: BridgeMetrics | None = None,
        transport_options: dict | None = None,
        ssl: bool | dict = False,
    ):
        self.settings = settings
        self.transport_options = transport_options or {}
        self.ssl = ssl
        self.enveloper = enveloper
        self.send_all = send_all
        self.metrics = metrics or BridgeMetrics()
        self.topics = topics_by_kind(settings)
        self.last_message_at: float | None = None
        self.lost: tuple[float | None, str] | None = None  # (last message before, why) of a lost connection
        self.pending: list = []  # (message, received_at) not yet in Kafka
        self.stopping = False
        self.counts = {"messages": 0, "records": 0, "batches": 0}

    def stop(self) -> None:
        self.stopping = True

    def _queue(self, conn: Connection) -> tuple[Queue, bool]:
        exchange = get_exchange(conn)  # topic on AMQP, fanout on Redis (as Celery's own receiver)
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
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.5, max=30),
            retry=lambda state: state.outcome.failed and not self.stopping,
            before_sleep=self._on_broker_lost,
        ):
            with attempt:
                self._consume(url)

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
            log.info("consuming Celery events: broker=%s queue=%s acks=%s cluster=%s", mask_url(url), queue.name, acks, self.settings.cluster)
            self.pending = []  # unacked messages of a lost connection come back by redelivery
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
                batch_started = time.monotonic()
                while not self.stopping:
                    self.metrics.tick(self.settings.cluster)
                    left = self.settings.bridge_batch_seconds - (time.monotonic() - batch_started)
                    if self.pending and (left <= 0 or len(self.pending) >= self.settings.bridge_batch_size):
                        self._flush(acks)
                        batch_started = time.monotonic()
                        continue
                    try:
                        conn.drain_events(timeout=max(left, 0.01) if self.pending else self.settings.bridge_batch_seconds)
                    except socket.timeout:
                        if not self.pending:
                            batch_started = time.monotonic()
                if self.pending:
                    self._flush(acks)

    def _on_message(self, message) -> None:
        self.last_message_at = time.time()
        self.pending.append((message, self.last_message_at))
        self.metrics.in_flight.labels(self.settings.cluster).set(len(self.pending))

    def _flush(self, acks: bool) -> None:
        records: list[Routed] = []
        for message, received_at in self.pending:
            body = message.body
            compression = (message.headers or {}).get("compression")
            if compression:
                body = decompress(body, compression)
            records.extend(self.enveloper.wrap(body, message.delivery_info.get("routing_key"), received_at))
        cluster = self.settings.cluster
        by_kind = Counter(record.kind for record in records)  # metrics per batch, not per event
        for kind, count in by_kind.items():
            self.metrics.events_in.labels(cluster, kind).inc(count)
        self._send(records)
        for kind, count in by_kind.items():
            self.metrics.records_out.labels(cluster, self.topics[kind]).inc(count)
        self.metrics.dead_letters.labels(cluster).inc(by_kind.get(DEAD, 0))
        if by_kind.get(STATUS):  # rare: a heartbeat gap found in this batch
            for record in records:
                if record.kind == STATUS:
                    self.metrics.gaps.labels(cluster, orjson.loads(record.value)["gap"]).inc()
        if acks:
            self.pending[-1][0].ack(multiple=True)  # every message up to this one is in Kafka
            self.metrics.broker_acks.labels(cluster).inc(len(self.pending))
        self.metrics.in_flight.labels(cluster).set(0)
        self.counts["messages"] += len(self.pending)
        self.counts["records"] += len(records)
        self.counts["batches"] += 1
        self.pending = []

    def _send(self, records: list[Routed]) -> None:
        # Back-pressure: while Kafka is down we neither ack nor consume; RabbitMQ keeps the rest.
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.5, max=30),
            retry=retry_if_exception_type(KafkaUnavailable),
            before_sleep=lambda st: self._on_kafka_down(st, len(records)),
        ):
            with attempt:
                self.send_all(records)

    def _on_kafka_down(self, state, held: int) -> None:
        self.metrics.kafka_errors.labels(self.settings.cluster).inc()
        self.metrics.tick(self.settings.cluster)  # waiting on Kafka is not being stuck
        log.warning(
            "Kafka unavailable (%s); holding %d events, retry %d in %.1fs (check KAFKA_BOOTSTRAP=%s, make status)",
            state.outcome.exception(), held, state.attempt_number, state.next_action.sleep, self.settings.kafka_bootstrap,
        )
