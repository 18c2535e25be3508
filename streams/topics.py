"""Create every topic up front with one partition count (Tansu auto-creates with 4)."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from .config import Settings

log = logging.getLogger("streams.topics")
TABLES = ("tasks", "workers", "worker-losses", "celery-metrics")
INTERNAL = (
    "task-failures",  # re-keyed by task name for failure-burst alerts
    "worker-losses",  # a lost worker, broadcast to every partition: the tasks it leaves orphaned
)


def topic_names(settings: Settings) -> list[str]:
    """Pipeline topics plus the Faust changelogs and internal topics (same partitions as the sources)."""
    return (
        settings.all_topics()
        + [f"{settings.app_id}-{table}-changelog" for table in TABLES]
        + [f"{settings.app_id}-{name}" for name in INTERNAL]
    )


def ensure_topics(settings: Settings) -> list[str]:
    admin = KafkaAdminClient(**settings.kafka_client_options(), client_id="celery-monitor-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1) for name in missing]
                )
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        return missing
    finally:
        admin.close()
