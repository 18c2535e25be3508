"""Every Kafka topic the pipeline uses, as a plan: name, partitions, replicas, configuration.

    plan_topics(settings)            -> [TopicPlan]  (pure: `celery-monitor topics --plan` prints it)
    ensure_topics(settings)          -> TopicChanges: creates what is missing, fixes configs it may change
    inspect_topics(settings, plan)   -> [TopicCheck]: actual against planned (`celery-monitor check`)

Why each topic is configured as it is:
* **Table changelogs** (``<app id>-<table>-changelog``) are Faust's state: ``cleanup.policy=compact``,
  so the latest value of every key stays however old it is. With Kafka's default delete policy a
  restart after ``retention.ms`` (7 days) would recover tables without their older keys (lost
  workers forgotten, the exporter's counters reset). Faust creates changelogs compacted itself, but
  only when it creates them; the pipeline pre-creates every topic (co-partitioning: see below), so
  the policy is set here.
* **Event topics and dead letters** hold the raw input: deleted after ``TOPIC_EVENTS_RETENTION_MS``
  (ClickHouse keeps the history); ``max.message.bytes`` fits the bridge's largest record (one
  oversized event alone in a pack, up to ``MAX_RECORD_BYTES``), above Kafka's 1 MB default.
* **Output and internal topics** are deleted after ``TOPIC_RECORDS_RETENTION_MS``.
* Every topic has ``TOPIC_PARTITIONS`` partitions: the task agent reads the task events and the
  worker-loss broadcast co-partitioned, and each table's changelog partition p belongs to source
  partition p. Every topic has ``TOPIC_REPLICATION_FACTOR`` replicas and
  ``min.insync.replicas = TOPIC_MIN_INSYNC_REPLICAS``: with ``acks=all`` (every producer here) a
  write is acknowledged only once that many replicas have it, so losing a broker loses nothing.

The partition count and the replication factor of an existing topic are never changed here
(more partitions would move keys off the partitions their state lives on; replicas are moved by
a reassignment): ``check`` reports them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .connections import librdkafka_options
from .errors import DependencyError

log = logging.getLogger("streams.topics")
TABLES = ("tasks", "workers", "worker-losses", "celery-metrics")
INTERNAL = (
    "task-failures",  # re-keyed by task name for failure-burst alerts
    "worker-losses",  # a lost worker, broadcast to every partition: the tasks it leaves orphaned
)
MAX_RECORD_BYTES = 4 * 1024 * 1024  # the bridge producer's message.max.bytes: one oversized event alone in a pack
TOPIC_MAX_MESSAGE_BYTES = MAX_RECORD_BYTES + 64 * 1024  # Kafka counts the batch framing too
ADMIN_TIMEOUT = 15.0
# Configs `topics` may change on an existing topic: changing them loses nothing.
FIXABLE = ("cleanup.policy", "retention.ms", "min.insync.replicas", "max.message.bytes")


@dataclass(frozen=True)
class TopicPlan:
    name: str
    role: str  # events | dead-letters | records | changelog | internal
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "partitions": self.partitions,
                "replication_factor": self.replication_factor, "config": dict(self.config)}  # fmt: skip


def plan_topics(settings: Settings) -> list[TopicPlan]:
    """Every topic of the pipeline (sources, outputs, changelogs, internal) as it should be."""
    s = settings
    common = {"min.insync.replicas": str(s.topic_min_insync_replicas)}
    events = {**common, "cleanup.policy": "delete", "retention.ms": str(s.topic_events_retention_ms),
              "max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}  # fmt: skip
    records = {**common, "cleanup.policy": "delete", "retention.ms": str(s.topic_records_retention_ms)}
    changelog = {**common, "cleanup.policy": "compact"}
    topics = [
        (s.topic_task_events, "events", events),
        (s.topic_worker_events, "events", events),
        (s.topic_dead_letters, "dead-letters", events),
        (s.topic_task_states, "records", records),
        (s.topic_worker_states, "records", records),
        (s.topic_alerts, "records", records),
        (s.topic_bridge_status, "records", records),
        (s.topic_queue_lengths, "records", records),
        # An audit trail is kept: nothing ages out of it (ClickHouse keeps its rows too).
        (s.topic_audit, "audit", {**common, "cleanup.policy": "delete", "retention.ms": "-1"}),
    ]
    topics += [(f"{s.app_id}-{table}-changelog", "changelog", changelog) for table in TABLES]
    topics += [(f"{s.app_id}-{name}", "internal", records) for name in INTERNAL]
    return [TopicPlan(name, role, s.topic_partitions, s.topic_replication_factor, dict(config)) for name, role, config in topics]


def topic_names(settings: Settings) -> list[str]:
    return [plan.name for plan in plan_topics(settings)]


def admin_client(settings: Settings):
    from confluent_kafka.admin import AdminClient

    return AdminClient({**librdkafka_options(settings), "client.id": "celery-monitor-admin"})


@dataclass
class TopicChanges:
    created: list[str] = field(default_factory=list)
    fixed: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> {config: new value}
    unchecked: list[str] = field(default_factory=list)  # the broker reported no configuration
    refused: dict[str, str] = field(default_factory=dict)  # topic -> why a planned change was not made


def ensure_topics(settings: Settings, fix: bool = True) -> TopicChanges:
    """Create every planned topic that is missing (with its configuration); with ``fix``, set the
    :data:`FIXABLE` configs of existing topics that differ from the plan. Idempotent; safe to run
    from several processes at once. Raises RuntimeError when Kafka refuses."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    plans = plan_topics(settings)
    changes = TopicChanges()
    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT)
    existing = set(metadata.topics)
    missing = [p for p in plans if p.name not in existing]
    if missing and len(metadata.brokers) < settings.topic_replication_factor:
        raise DependencyError(
            f"Kafka has {len(metadata.brokers)} broker(s), fewer than TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor}: "
            f"cannot create {', '.join(p.name for p in missing)} (set TOPIC_REPLICATION_FACTOR and TOPIC_MIN_INSYNC_REPLICAS for this cluster)"
        )
    if missing:
        futures = admin.create_topics(
            [NewTopic(p.name, p.partitions, p.replication_factor, config=p.config) for p in missing], request_timeout=ADMIN_TIMEOUT
        )
        for name, future in futures.items():
            try:
                future.result()
                changes.created.append(name)
            except Exception as exc:  # noqa: BLE001 - the error is inspected below
                error = exc.args[0] if exc.args else None
                if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by another process
                raise DependencyError(f"could not create topic {name}: {exc}") from exc
    if fix:
        present = [p for p in plans if p.name in existing]
        actual = describe_configs(admin, [p.name for p in present])
        wanted: dict[str, dict[str, str]] = {}
        for p in present:
            partitions = len(metadata.topics[p.name].partitions)
            if partitions != p.partitions:
                changes.refused[p.name] = (f"has {partitions} partitions, {p.partitions} planned (TOPIC_PARTITIONS): never changed "
                                           "here (keys would move away from their state); see `celery-monitor check`")  # fmt: skip
            configs = actual.get(p.name)
            if not configs:
                changes.unchecked.append(p.name)
                continue
            diff = {k: v for k, v in p.config.items() if k in FIXABLE and configs.get(k) != v}
            replicas = min((len(part.replicas) for part in metadata.topics[p.name].partitions.values()), default=0)
            if "min.insync.replicas" in diff and int(diff["min.insync.replicas"]) > replicas:
                # acks=all writes would all fail (NOT_ENOUGH_REPLICAS): never set it above the replicas there are
                del diff["min.insync.replicas"]
                why = (f"min.insync.replicas={p.config['min.insync.replicas']} not set: the topic has {replicas} replica(s) (add "
                       f"replicas by a partition reassignment, or lower TOPIC_MIN_INSYNC_REPLICAS)")  # fmt: skip
                changes.refused[p.name] = f"{changes.refused[p.name]}; {why}" if p.name in changes.refused else why
            if diff:
                wanted[p.name] = diff
        if wanted:
            alter_configs(admin, wanted)
            changes.fixed = wanted
    return changes


def partition_mismatches(settings: Settings, admin=None) -> str:
    """Existing planned topics whose partition count is not TOPIC_PARTITIONS, as one line ('' when
    none): a worker must not start on them (its tables and internal topics are partitioned as its
    sources, and a new app id's changelogs would be created with the wrong count)."""
    admin = admin or admin_client(settings)
    topics = admin.list_topics(timeout=ADMIN_TIMEOUT).topics
    wrong = [f"{p.name} has {len(topics[p.name].partitions)}" for p in plan_topics(settings)
             if p.name in topics and topics[p.name].error is None and len(topics[p.name].partitions) != p.partitions]  # fmt: skip
    return ", ".join(wrong)


def describe_configs(admin, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configuration as the broker reports it ({} when it reports none)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    if not names:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=ADMIN_TIMEOUT)
    out: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        try:
            out[resource.name] = {k: e.value for k, e in future.result().items() if e.value is not None}
        except Exception as exc:  # noqa: BLE001 - a broker without DescribeConfigs: nothing to compare
            log.debug("describe configs of %s: %s", resource.name, exc)
            out[resource.name] = {}
    return out


def alter_configs(admin, wanted: dict[str, dict[str, str]]) -> None:
    """Set some configs of some topics, leaving the others as they are (IncrementalAlterConfigs)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    resources = [
        ConfigResource(ResourceType.TOPIC, name,
                       incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
        for name, configs in wanted.items()
    ]  # fmt: skip
    for resource, future in admin.incremental_alter_configs(resources, request_timeout=ADMIN_TIMEOUT).items():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001
            raise DependencyError(f"could not change the configuration of {resource.name}: {exc}") from exc
        log.info("topic %s: set %s", resource.name, wanted[resource.name])


@dataclass
class TopicCheck:
    """One topic's actual state against its plan; ``errors`` lose data, ``warnings`` may."""

    name: str
    role: str
    exists: bool
    partitions: int | None = None
    replication_factor: int | None = None
    config: dict[str, str] | None = None  # None: the broker reported none
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "exists": self.exists, "partitions": self.partitions,
                "replication_factor": self.replication_factor, "config": self.config, "errors": self.errors,
                "warnings": self.warnings}  # fmt: skip


def inspect_topics(settings: Settings, admin=None) -> list[TopicCheck]:
    """Compare every planned topic with the broker: existence, partitions, replicas, the configs
    the plan sets. Losing data is an error: a missing topic, fewer partitions than planned (keys
    would move off their state), a changelog that is not compacted, fewer replicas or in-sync
    replicas than planned, a shorter retention than planned."""
    admin = admin or admin_client(settings)
    plans = plan_topics(settings)
    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT).topics
    configs = describe_configs(admin, [p.name for p in plans if p.name in metadata])
    out = []
    for plan in plans:
        topic = metadata.get(plan.name)
        if topic is None or topic.error is not None:
            out.append(TopicCheck(plan.name, plan.role, False, errors=["missing: run `celery-monitor topics`"]))
            continue
        partitions = len(topic.partitions)
        replicas = min((len(p.replicas) for p in topic.partitions.values()), default=0)
        check = TopicCheck(plan.name, plan.role, True, partitions, replicas, configs.get(plan.name) or None)
        if partitions < plan.partitions:
            check.errors.append(f"{partitions} partitions, {plan.partitions} planned: keys would be read on partitions without their state")
        elif partitions > plan.partitions:
            check.errors.append(f"{partitions} partitions, {plan.partitions} planned (TOPIC_PARTITIONS): co-partitioned topics must agree")
        if replicas < plan.replication_factor:
            check.errors.append(f"{replicas} replica(s), {plan.replication_factor} planned: losing a broker loses its partitions")
        if check.config is None:
            check.warnings.append("configuration not reported by the broker: not compared")
        else:
            _compare(plan, check)
        out.append(check)
    return out


def _compare(plan: TopicPlan, check: TopicCheck) -> None:
    actual = check.config or {}
    policy = actual.get("cleanup.policy")
    if plan.role == "changelog" and policy is not None and policy != "compact":
        check.errors.append(f"cleanup.policy={policy}: a changelog must be compacted only (with delete, table state older than "
                            "retention.ms is lost)")  # fmt: skip
    elif policy is not None and policy != plan.config.get("cleanup.policy"):
        check.warnings.append(f"cleanup.policy={policy}, {plan.config.get('cleanup.policy')} planned")
    isr = actual.get("min.insync.replicas")
    if isr is not None and int(isr) < int(plan.config["min.insync.replicas"]):
        check.errors.append(f"min.insync.replicas={isr}, {plan.config['min.insync.replicas']} planned: an acknowledged write may live on one broker only")
    retention = actual.get("retention.ms")
    planned = plan.config.get("retention.ms")
    if retention is not None and planned is not None and policy != "compact":
        if _retention(retention) < _retention(planned):
            check.errors.append(f"retention.ms={retention}, {planned} planned: records are deleted before the plan says")
        elif retention != planned:
            check.warnings.append(f"retention.ms={retention}, {planned} planned")
    size = actual.get("max.message.bytes")
    if size is not None and "max.message.bytes" in plan.config and int(size) < int(plan.config["max.message.bytes"]):
        check.errors.append(f"max.message.bytes={size}, {plan.config['max.message.bytes']} planned: the bridge's largest records are refused")


def _retention(value: str) -> float:
    number = int(value)
    return float("inf") if number < 0 else number
