"""The Kafka adapter of the bridge: the only bridge module that talks to Kafka.

librdkafka (confluent-kafka) rather than kafka-python: the bridge's job is one produce per
event, and kafka-python's pure-Python send path (size estimate, murmur2, accumulator) held it
at 16-18k events/s on one core; librdkafka does the same work in C (see README, benchmarks).
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaException, Producer

from streams.config import Settings

from .envelope import Routed, topics_by_kind

log = logging.getLogger("bridge.kafka")


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge a batch; the bridge retries it and consumes nothing meanwhile."""


class _Delivery:
    """One batch's outstanding deliveries; reports arrive on whichever thread polls the producer."""

    def __init__(self, records: list[Routed]):
        self.records = records
        self.produced = 0
        self.reports: list[tuple[Routed, object]] = []  # list.append is atomic: no lock needed

    def report(self, record: Routed, err) -> None:
        self.reports.append((record, err))

    @property
    def complete(self) -> bool:
        return len(self.reports) >= self.produced

    def take_failed(self) -> list[Routed]:
        failed = [record for record, err in self.reports if err is not None]
        self.produced, self.reports = 0, []
        return failed

    def errors(self) -> list:
        return [err for _, err in self.reports if err is not None]


class KafkaEventProducer:
    """Sends batches and returns only when Kafka acknowledged all of a batch.

    One producer serves every cluster's receiver thread. A batch that timed out stays queued
    inside librdkafka, which keeps retrying it; calling send_all again with the same batch
    waits for those deliveries and re-produces only the records whose delivery definitively
    failed, so a Kafka outage adds no copies of its own.
    """

    def __init__(self, settings: Settings):
        self.topics = topics_by_kind(settings)
        self.timeout = settings.bridge_kafka_timeout
        self._last_error = ""
        self._local = threading.local()  # the batch in flight, per receiver thread
        self.producer = Producer({
            **settings.librdkafka_options(),
            "client.id": f"celery-monitor-bridge-{settings.cluster}",
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "message.max.bytes": 4 * 1024 * 1024,
            # Same partition for a key as Java, kafka-python and aiokafka producers (murmur2):
            # a replay or a second bridge must not split one task over two partitions.
            "partitioner": "murmur2_random",
            # In-flight is bounded by the batch (BRIDGE_BATCH_SIZE messages); this is a backstop.
            "queue.buffering.max.kbytes": 64 * 1024,
            "message.timeout.ms": max(int(self.timeout * 1000) * 6, 30_000),
            "error_cb": self._on_client_error,
        })

    def _on_client_error(self, err) -> None:
        self._last_error = str(err)
        log.debug("kafka client: %s", err)

    def _produce(self, records: list[Routed], delivery: _Delivery) -> None:
        for record in records:
            while True:
                try:
                    self.producer.produce(
                        self.topics[record.kind], value=record.value, key=record.key,
                        on_delivery=lambda err, _msg, record=record: delivery.report(record, err),
                    )
                    delivery.produced += 1
                    break
                except BufferError:  # librdkafka's queue is full: serve delivery reports, then retry
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    raise KafkaUnavailable(str(exc)) from exc

    def send_all(self, records: list[Routed]) -> None:
        """Return only when Kafka acknowledged every record; raise KafkaUnavailable otherwise."""
        delivery = getattr(self._local, "delivery", None)
        if delivery is None or delivery.records is not records:
            delivery = self._local.delivery = _Delivery(records)
            self._produce(records, delivery)
        elif delivery.complete and delivery.errors():
            self._produce(delivery.take_failed(), delivery)
        deadline = time.monotonic() + self.timeout
        while not delivery.complete and time.monotonic() < deadline:
            self.producer.poll(min(0.1, max(deadline - time.monotonic(), 0)))
        errors = delivery.errors()
        if not delivery.complete or errors:
            waiting = delivery.produced - len(delivery.reports)
            raise KafkaUnavailable(
                f"{waiting} records unacknowledged and {len(errors)} failed of {len(records)}"
                f" after {self.timeout:.0f}s ({errors[0] if errors else self._last_error or 'no response'})"
            )
        self._local.delivery = None

    def close(self) -> None:
        left = self.producer.flush(10)
        if left:
            log.warning("closing with %d records unacknowledged; their broker messages stay unacked and come back", left)
