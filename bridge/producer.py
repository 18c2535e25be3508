"""The Kafka adapter of the bridge: the only module that imports kafka-python."""

from __future__ import annotations

import logging

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams.config import Settings

from .envelope import Routed, topics_by_kind

log = logging.getLogger("bridge.kafka")


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge a batch; the bridge retries it and consumes nothing meanwhile."""


class KafkaEventProducer:
    def __init__(self, settings: Settings):
        self.topics = topics_by_kind(settings)
        self.flush_timeout = settings.bridge_kafka_timeout
        timeout_ms = int(settings.bridge_kafka_timeout * 1000)
        self.producer = KafkaProducer(
            **settings.kafka_client_options(),
            client_id=f"celery-monitor-bridge-{settings.cluster}",
            acks="all",
            linger_ms=5,
            batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
            retries=5,
            request_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
        )

    def send_all(self, records: list[Routed]) -> None:
        """Return only when Kafka acknowledged every record; raise KafkaUnavailable otherwise."""
        try:
            futures = [self.producer.send(self.topics[r.kind], key=r.key, value=r.value) for r in records]
            self.producer.flush(timeout=self.flush_timeout)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise KafkaUnavailable(str(exc)) from exc

    def close(self) -> None:
        self.producer.close(timeout=10)
