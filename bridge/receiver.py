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
from typing import Callable

from celery.events.event import get_exchange
from kombu import Connection, Queue
from kombu.compression import decompress
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from streams.config import Settings, mask_url

from .envelope import Enveloper, Routed
from .producer import KafkaUnavailable

log = logging.getLogger("bridge.receiver")


class BrokerReceiver:
    def __init__(self, settings: Settings, enveloper: Enveloper, send_all: Callable[[list[Routed]], None]):
        self.settings = settings
        self.enveloper = enveloper
        self.send_all = send_all
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
            before_sleep=lambda st: log.warning(
                "broker connection lost (%s); reconnecting to %s in %.1fs",
                st.outcome.exception(), mask_url(url), st.next_action.sleep,
            ),
        ):
            with attempt:
                self._consume(url)

    def _consume(self, url: str) -> None:
        with Connection(url, connect_timeout=10) as conn:
            conn.ensure_connection(max_retries=1)
            queue, acks = self._queue(conn)
            log.info("consuming Celery events: broker=%s queue=%s acks=%s cluster=%s", mask_url(url), queue.name, acks, self.settings.cluster)
            self.pending = []  # unacked messages of a lost connection come back by redelivery
            # prefetch must be set before basic.consume: RabbitMQ applies a per-consumer qos only
            # to consumers started after it (set later, the whole queue was delivered at once).
            prefetch = self.settings.bridge_prefetch if acks else None
            with conn.Consumer(queue, on_message=self._on_message, no_ack=not acks, prefetch_count=prefetch):
                batch_started = time.monotonic()
                while not self.stopping:
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
        self.pending.append((message, time.time()))

    def _flush(self, acks: bool) -> None:
        records: list[Routed] = []
        for message, received_at in self.pending:
            body = message.body
            compression = (message.headers or {}).get("compression")
            if compression:
                body = decompress(body, compression)
            records.extend(self.enveloper.wrap(body, message.delivery_info.get("routing_key"), received_at))
        # Back-pressure: while Kafka is down we neither ack nor consume; RabbitMQ keeps the rest.
        for attempt in Retrying(
            wait=wait_exponential(multiplier=0.5, max=30),
            retry=retry_if_exception_type(KafkaUnavailable),
            before_sleep=lambda st: log.warning(
                "Kafka unavailable (%s); holding %d events, retry %d in %.1fs (check KAFKA_BOOTSTRAP=%s, make status)",
                st.outcome.exception(), len(records), st.attempt_number, st.next_action.sleep, self.settings.kafka_bootstrap,
            ),
        ):
            with attempt:
                self.send_all(records)
        if acks:
            self.pending[-1][0].ack(multiple=True)  # every message up to this one is in Kafka
        self.counts["messages"] += len(self.pending)
        self.counts["records"] += len(records)
        self.counts["batches"] += 1
        self.pending = []
