"""The Kafka adapter of the bridge: the only bridge module that talks to Kafka.

librdkafka (confluent-kafka) rather than kafka-python: kafka-python's pure-Python send path (size
estimate, murmur2, accumulator) held the bridge at 16-18k events/s on one core; librdkafka does
the same work in C (see docs/benchmarks.md). Packs are produced to the partition the bridge
computed (bridge/packs.py), so this module also reads each topic's partition count.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.config import Settings
from streams.connections import librdkafka_options

from .envelope import Routed, topics_by_kind

log = logging.getLogger("bridge.kafka")

MESSAGE_MAX_BYTES = 4 * 1024 * 1024  # librdkafka's limit for one record (a pack, or one oversized event)
# Refusals that packing again can fix: the partition count changed (topic re-created), or a broker
# whose message size limit is below our pack size.
PARTITION_ERRORS = frozenset({KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART})
SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})
RECOVERIES = 3  # repacks per send before backing off


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge a batch; the bridge retries it and consumes nothing meanwhile."""


# repack(refused packs, smaller size limit or None) -> new records (packs and dead letters)
Repack = Callable[[list[Routed], "int | None"], list[Routed]]


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

    def take_failed(self) -> list[tuple[Routed, KafkaError]]:
        failed = [(record, err) for record, err in self.reports if err is not None]
        self.produced, self.reports = 0, []
        return failed

    def errors(self) -> list:
        return [err for _, err in self.reports if err is not None]


class KafkaEventProducer:
    """Sends batches and returns only when Kafka acknowledged all of a batch.

    One producer serves every cluster's receiver thread. A batch that timed out stays queued
    inside librdkafka, which keeps retrying it; calling send_all again with the same batch
    waits for those deliveries and re-produces only the records whose delivery definitively
    failed, so a Kafka outage adds no copies of its own. Packs refused for their partition
    (the topic changed) or their size are packed again at once through ``repack``.
    """

    def __init__(self, settings: Settings):
        self.topics = topics_by_kind(settings)
        self.timeout = settings.bridge_kafka_timeout
        self._last_error = ""
        self._local = threading.local()  # the batch in flight, per receiver thread
        self._partitions: dict[str, int] = {}
        self.producer = Producer({
            **librdkafka_options(settings),
            "client.id": f"celery-monitor-bridge-{settings.cluster}",
            "acks": "all",
            # The bridge batches itself (one pack per partition per flush) and waits for the acks
            # of each flush: lingering here would only add to every flush's latency.
            "linger.ms": 1,
            "batch.size": 1_000_000,
            "message.max.bytes": MESSAGE_MAX_BYTES,
            # Keyed records (dead letters, status) land where Java, kafka-python and aiokafka
            # producers put them (murmur2); packs carry the partition bridge/packs.py computed.
            "partitioner": "murmur2_random",
            # In-flight is bounded by the batch (BRIDGE_BATCH_SIZE messages); this is a backstop.
            "queue.buffering.max.kbytes": 64 * 1024,
            "message.timeout.ms": max(int(self.timeout * 1000) * 6, 30_000),
            "error_cb": self._on_client_error,
        })  # fmt: skip

    def _on_client_error(self, err) -> None:
        self._last_error = str(err)
        log.debug("kafka client: %s", err)

    def partitions(self, kind: str) -> int:
        """Partition count of the topic of ``kind`` (TASK, WORKER), read from metadata once and
        again after Kafka refused a pack for its partition."""
        topic = self.topics[kind]
        count = self._partitions.get(topic)
        if count is None:
            try:
                metadata = self.producer.list_topics(topic, timeout=self.timeout)
            except KafkaException as exc:
                raise KafkaUnavailable(f"no metadata for {topic}: {exc}") from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                why = found.error if found is not None else "missing"
                raise KafkaUnavailable(f"topic {topic} is not usable ({why}); create the topics with `python -m streams topics`")
            count = self._partitions[topic] = len(found.partitions)
        return count

    def _produce(self, records: list[Routed], delivery: _Delivery) -> None:
        for record in records:
            on_delivery = lambda err, _msg, record=record: delivery.report(record, err)  # noqa: E731
            while True:
                try:
                    if record.partition is None:
                        self.producer.produce(self.topics[record.kind], value=record.value, key=record.key, on_delivery=on_delivery)
                    else:
                        self.producer.produce(self.topics[record.kind], value=record.value, partition=record.partition, on_delivery=on_delivery)
                    delivery.produced += 1
                    break
                except BufferError:  # librdkafka's queue is full: serve delivery reports, then retry
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    error = exc.args[0]
                    if error.code() in PARTITION_ERRORS or error.code() in SIZE_ERRORS:
                        delivery.produced += 1  # refused at once: handled like a refused delivery
                        delivery.report(record, error)
                        break
                    raise KafkaUnavailable(str(exc)) from exc

    def _recover(self, failed: list[tuple[Routed, KafkaError]], repack: Repack | None) -> list[Routed] | None:
        """What to produce again now, or None when only waiting (backing off) can help."""
        moved = [r for r, err in failed if r.partition is not None and err.code() in PARTITION_ERRORS]
        too_big = [r for r, err in failed if r.partition is not None and err.code() in SIZE_ERRORS]
        if repack is None or not (moved or too_big):
            return None
        for record in moved:
            self._partitions.pop(self.topics[record.kind], None)
        if moved:
            log.warning("Kafka refused %d packs for their partition; reading the partition counts again and repacking", len(moved))
        handled = {id(r) for r in moved} | {id(r) for r in too_big}
        again = [r for r, _ in failed if id(r) not in handled]
        if moved:
            again += repack(moved, None)
        if too_big:
            largest = max(len(r.value) for r in too_big)
            log.warning("Kafka refused %d packs for their size (largest %d bytes); splitting them", len(too_big), largest)
            again += repack(too_big, max(largest // 2, 1))
        return again

    def send_all(self, records: list[Routed], repack: Repack | None = None) -> None:
        """Return only when Kafka acknowledged every record; raise KafkaUnavailable otherwise."""
        delivery = getattr(self._local, "delivery", None)
        if delivery is None or delivery.records is not records:
            delivery = self._local.delivery = _Delivery(records)
            self._produce(records, delivery)
        elif delivery.complete and delivery.errors():
            self._produce([r for r, _ in delivery.take_failed()], delivery)
        deadline = time.monotonic() + self.timeout
        recoveries = 0
        while True:
            while not delivery.complete and time.monotonic() < deadline:
                self.producer.poll(min(0.1, max(deadline - time.monotonic(), 0)))
            errors = delivery.errors()
            if delivery.complete and errors and recoveries < RECOVERIES:
                failed = [(r, e) for r, e in delivery.reports if e is not None]
                again = self._recover(failed, repack)
                if again is not None:
                    recoveries += 1
                    delivery.take_failed()
                    self._produce(again, delivery)
                    continue
            if not delivery.complete or errors:
                waiting = delivery.produced - len(delivery.reports)
                raise KafkaUnavailable(
                    f"{waiting} records unacknowledged and {len(errors)} failed of {len(records)}"
                    f" after {self.timeout:.0f}s ({errors[0] if errors else self._last_error or 'no response'})"
                )
            break
        self._local.delivery = None

    def close(self) -> None:
        left = self.producer.flush(10)
        if left:
            log.warning("closing with %d records unacknowledged; their broker messages stay unacked and come back", left)
