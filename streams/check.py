"""`celery-monitor check`: is this deployment able to run without losing data?

Connects to Kafka, ClickHouse and the Celery broker and reports:
* every planned topic against the broker (streams.topics.inspect_topics): exists, partitions,
  replicas, and -- where the broker reports configurations -- the configs the plan sets;
* the ClickHouse schema: migrations applied against the ones this version ships;
* the Celery broker: reachable; on AMQP the bridge queue's depth and consumers;
* consumer lag of the streams worker's group (event topics) and of the sink's group.

``errors`` lose data or stop the pipeline (exit status 1); ``warnings`` are worth a look.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .config import Settings, mask_url
from .connections import librdkafka_options

log = logging.getLogger("streams.check")
TIMEOUT = 10.0


def run_checks(settings: Settings, broker: bool = True) -> dict[str, Any]:
    report: dict[str, Any] = {"checked_at": time.time(), "errors": [], "warnings": []}
    report["kafka"] = _kafka(settings, report)
    report["clickhouse"] = _clickhouse(settings, report)
    if broker:
        report["broker"] = _broker(settings, report)
    return report


def _kafka(settings: Settings, report: dict) -> dict:
    from .topics import admin_client, inspect_topics

    out: dict[str, Any] = {"bootstrap": settings.kafka_bootstrap, "flavor": settings.kafka_flavor}
    try:
        admin = admin_client(settings)
        metadata = admin.list_topics(timeout=TIMEOUT)
        out["brokers"] = len(metadata.brokers)
        out["cluster_id"] = metadata.cluster_id
        checks = inspect_topics(settings, admin)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, bad credentials
        report["errors"].append(f"kafka {settings.kafka_bootstrap}: {exc}")
        out["error"] = str(exc)
        return out
    out["topics"] = [c.as_json() for c in checks]
    for c in checks:
        report["errors"] += [f"topic {c.name}: {e}" for e in c.errors]
        report["warnings"] += [f"topic {c.name}: {w}" for w in c.warnings]
    if out["brokers"] < settings.topic_replication_factor:
        report["errors"].append(
            f"kafka has {out['brokers']} broker(s), TOPIC_REPLICATION_FACTOR is {settings.topic_replication_factor}: topics cannot be created"
        )
    existing = {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
    out["lag"] = _lag(settings, existing, report)
    return out


def _lag(settings: Settings, existing: dict[str, int], report: dict) -> dict:
    """Records not yet committed, per consumer group and topic (high watermark - committed)."""
    from confluent_kafka import Consumer, TopicPartition

    groups = {
        settings.app_id: [t for t in settings.event_topics if t in existing],
        settings.sink_group: [t for t in (*settings.event_topics, settings.topic_task_states, settings.topic_worker_states,
                                          settings.topic_queue_lengths) if t in existing],  # fmt: skip
    }
    out: dict[str, dict[str, int | None]] = {}
    for group, topics in groups.items():
        consumer = Consumer({**librdkafka_options(settings), "group.id": group, "enable.auto.commit": False})
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(existing[t])]
            committed = consumer.committed(tps, timeout=TIMEOUT) if tps else []
            highs = _highwaters(settings, consumer, tps)
            lag: dict[str, int | None] = {}
            for tp in committed:
                high = highs.get((tp.topic, tp.partition))
                if high is None:
                    continue
                done = tp.offset if tp.offset >= 0 else 0  # nothing committed: everything is behind
                lag[tp.topic] = (lag.get(tp.topic) or 0) + max(high - done, 0)
            out[group] = lag
        except Exception as exc:  # noqa: BLE001
            report["warnings"].append(f"consumer lag of group {group}: {exc}")
        finally:
            consumer.close()
    return out


def _highwaters(settings: Settings, consumer, tps) -> dict[tuple[str, int], int]:
    if settings.tansu_fixes and tps:
        from .tansu import fetch_highwaters  # Tansu's ListOffsets answer is wrong

        return {(tp.topic, tp.partition): high for tp, high in fetch_highwaters(settings.kafka_bootstrap.split(","), tps).items()}
    return {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=TIMEOUT)[1] for tp in tps}


def _clickhouse(settings: Settings, report: dict) -> dict:
    from .clickhouse import connect
    from .migrate import load_migrations

    db = settings.clickhouse_database
    out: dict[str, Any] = {"host": f"{settings.clickhouse_host}:{settings.clickhouse_port}", "database": db}
    shipped = [m.id for m in load_migrations(db)]
    out["schema_shipped"] = shipped[-1] if shipped else None
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)  # its connect warning has a traceback; the report says it once
    try:
        client = connect(settings, with_database=False, timeout=TIMEOUT)
        out["server_version"] = client.execute("SELECT version()")[0][0]
        exists = client.execute("SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'schema_migrations'", {"db": db})[0][0]
        applied = [row[0] for row in client.execute(f"SELECT id FROM {db}.schema_migrations ORDER BY id")] if exists else []
        client.disconnect()
    except Exception as exc:  # noqa: BLE001
        report["errors"].append(f"clickhouse {out['host']}: {exc}")
        out["error"] = str(exc)
        return out
    out["schema_applied"] = applied[-1] if applied else None
    pending = [m for m in shipped if m not in applied]
    unknown = [m for m in applied if m not in shipped]
    out["pending"] = pending
    if pending:
        report["errors"].append(f"clickhouse schema: migrations {', '.join(pending)} not applied: run `celery-monitor migrate`")
    if unknown:
        report["warnings"].append(f"clickhouse schema: migrations {', '.join(unknown)} are newer than this version")
    return out


def _broker(settings: Settings, report: dict) -> dict:
    from kombu import Connection

    from bridge.lifecycle import inspect_queue

    url = settings.broker_url
    out: dict[str, Any] = {"url": mask_url(url), "cluster": settings.cluster}
    try:
        with Connection(url, connect_timeout=TIMEOUT, ssl=settings.broker_ssl) as conn:
            conn.ensure_connection(max_retries=1)
            out["transport"] = conn.transport.driver_type
            if out["transport"] == "amqp":
                present, messages, consumers = inspect_queue(conn, settings.bridge_queue_name)
                out["bridge_queue"] = {"name": settings.bridge_queue_name, "present": present, "messages": messages, "consumers": consumers}
                if present and not consumers:
                    report["warnings"].append(f"bridge queue {settings.bridge_queue_name}: no consumer ({messages} events waiting)")
                elif not present:
                    report["warnings"].append(f"bridge queue {settings.bridge_queue_name}: absent (no bridge has run for cluster {settings.cluster})")
    except Exception as exc:  # noqa: BLE001
        report["errors"].append(f"celery broker {mask_url(url)}: {exc}")
        out["error"] = str(exc)
    return out


def render(report: dict) -> str:
    lines = []
    kafka = report.get("kafka", {})
    lines.append(f"kafka       {kafka.get('bootstrap')} ({kafka.get('flavor')}): "
                 + (f"ERROR {kafka['error']}" if "error" in kafka else f"{kafka.get('brokers')} broker(s)"))  # fmt: skip
    for topic in kafka.get("topics", []):
        state = "ok" if not topic["errors"] else "ERROR"
        shape = f"{topic['partitions']}p x{topic['replication_factor']}" if topic["exists"] else "missing"
        lines.append(f"  {state:<5} {topic['name']:<44} {topic['role']:<12} {shape}")
    for group, lag in (kafka.get("lag") or {}).items():
        lines.append(f"  lag of {group}: " + (", ".join(f"{t} {n}" for t, n in lag.items()) or "nothing committed yet"))
    ch = report.get("clickhouse", {})
    lines.append(f"clickhouse  {ch.get('host')}/{ch.get('database')}: "
                 + (f"ERROR {ch['error']}" if "error" in ch else
                    f"server {ch.get('server_version')}, schema {ch.get('schema_applied')} (this version: {ch.get('schema_shipped')})"))  # fmt: skip
    if "broker" in report:
        broker = report["broker"]
        queue = broker.get("bridge_queue")
        detail = f", bridge queue {queue['name']}: {queue['messages']} waiting, {queue['consumers']} consumer(s)" if queue and queue["present"] else ""
        lines.append(f"broker      {broker.get('url')}: " + (f"ERROR {broker['error']}" if "error" in broker else f"{broker.get('transport')}{detail}"))
    lines += [f"ERROR   {e}" for e in report["errors"]] + [f"warning {w}" for w in report["warnings"]]
    lines.append("OK: nothing loses data" if not report["errors"] else f"{len(report['errors'])} error(s): data can be lost or the pipeline stops")
    return "\n".join(lines)
