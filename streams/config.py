"""Every setting of the pipeline, in one place: environment variable, CLI flag, default, meaning.

Each process resolves its settings once at start (``Settings.load``); nothing else reads
``os.environ``.  ``python -m streams config`` prints the table (the README's copy comes from it).
Precedence: CLI flag > environment variable > default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable


def _setting(default: Any, env: str, help: str, secret: bool = False):
    return field(default=default, metadata={"env": env, "help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    # Kafka
    kafka_bootstrap: str = _setting("127.0.0.1:9092", "KAFKA_BOOTSTRAP", "Kafka bootstrap servers (host:port[,host:port])")
    kafka_flavor: str = _setting(
        "tansu", "KAFKA_FLAVOR", "'tansu' enables the corrections for Tansu's known bugs; 'kafka' for Apache Kafka (all off)"
    )
    kafka_security_protocol: str = _setting(
        "PLAINTEXT", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (every Kafka client of the pipeline)"
    )
    kafka_sasl_mechanism: str = _setting("PLAIN", "KAFKA_SASL_MECHANISM", "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (with SASL_*)")
    kafka_sasl_username: str = _setting("", "KAFKA_SASL_USERNAME", "SASL user")
    kafka_sasl_password: str = _setting("", "KAFKA_SASL_PASSWORD", "SASL password", secret=True)
    kafka_ssl_cafile: str = _setting("", "KAFKA_SSL_CAFILE", "CA bundle to verify the Kafka brokers (with SSL / SASL_SSL)")
    topic_partitions: int = _setting(8, "TOPIC_PARTITIONS", "partitions of every topic the pipeline creates")
    topic_task_events: str = _setting(
        "celery.task-events.v2", "TOPIC_TASK_EVENTS", "task-event packs (schemas/pack.v2.json), partition = murmur2(task uuid)"
    )
    topic_worker_events: str = _setting(
        "celery.worker-events.v2", "TOPIC_WORKER_EVENTS", "worker-event packs, partition = murmur2(cluster/hostname); ticks carry read_until"
    )
    topic_task_states: str = _setting("celery.task-states.v1", "TOPIC_TASK_STATES", "task-state records, key = task uuid")
    topic_worker_states: str = _setting(
        "celery.worker-states.v1", "TOPIC_WORKER_STATES", "worker-state records, key = cluster/hostname"
    )
    topic_dead_letters: str = _setting(
        "celery.dead-letters.v1", "TOPIC_DEAD_LETTERS", "inputs that are not valid events, with the reason"
    )
    topic_alerts: str = _setting(
        "celery.alerts.v1", "TOPIC_ALERTS", "alerts: task-critical, task-orphaned, failure-burst per task name, worker-lost, clock-drift"
    )
    topic_bridge_status: str = _setting(
        "celery.bridge-status.v1", "TOPIC_BRIDGE_STATUS", "bridge-gap records: loss detected on Redis (missed heartbeats, disconnects)"
    )
    topic_queue_lengths: str = _setting(
        "celery.queue-lengths.v1", "TOPIC_QUEUE_LENGTHS", "queue-length samples of the Celery task queues, key = cluster/queue"
    )
    # Celery broker (bridge)
    broker_url: str = _setting(
        "amqp://guest:guest@127.0.0.1:5672//", "CELERY_BROKER_URL", "Celery broker to read events from (amqp:// or redis://)", secret=True
    )
    cluster: str = _setting("default", "CLUSTER", "name of the Celery cluster the bridge reads; on every record")
    broker_ssl: bool = _setting(False, "BROKER_SSL", "TLS to the Celery broker (single-cluster mode; the cluster file has 'ssl' per cluster)")
    bridge_queue: str = _setting(
        "", "BRIDGE_QUEUE", "AMQP: durable queue bound to celeryev with '#' (default celery-monitor.bridge.<cluster>)"
    )
    bridge_queue_max_length: int = _setting(
        2_000_000, "BRIDGE_QUEUE_MAX_LENGTH", "AMQP x-max-length of the bridge queue (protects the broker when the bridge is down)"
    )
    bridge_queue_ttl_ms: int = _setting(86_400_000, "BRIDGE_QUEUE_TTL_MS", "AMQP x-message-ttl of the bridge queue (ms)")
    bridge_prefetch: int = _setting(
        100, "BRIDGE_PREFETCH", "AMQP prefetch: unacked broker messages in flight (a flush holds at most this many; BRIDGE_BATCH_BYTES bounds their memory)"
    )
    bridge_batch_size: int = _setting(
        50, "BRIDGE_BATCH_SIZE", "broker messages per Kafka flush at most (acked together after it; half the prefetch: the broker sends the next ones meanwhile)"
    )
    bridge_batch_bytes: int = _setting(
        2 * 1024 * 1024, "BRIDGE_BATCH_BYTES", "broker message bytes per Kafka flush at most (a task.multi body holds up to ~100 events)"
    )
    bridge_batch_seconds: float = _setting(
        0.2, "BRIDGE_BATCH_SECONDS", "longest a batch grows while messages keep coming (an idle broker: flushed at once)"
    )
    bridge_min_flush_interval: float = _setting(
        0.05, "BRIDGE_MIN_FLUSH_INTERVAL", "least time between two Kafka flushes under load (a quiet broker's message is flushed at once)"
    )
    bridge_pack_max_bytes: int = _setting(
        512 * 1024, "BRIDGE_PACK_MAX_BYTES", "a pack (one Kafka record: a flush's events for one partition) is split beyond this size"
    )
    bridge_tick_seconds: float = _setting(
        1.0, "BRIDGE_TICK_SECONDS", "worker-events partitions with no pack for this long get an empty pack carrying read_until"
    )
    bridge_kafka_timeout: float = _setting(
        10.0, "BRIDGE_KAFKA_TIMEOUT", "seconds Kafka has to acknowledge a batch before the bridge reports it unavailable and retries"
    )
    bridge_queue_sample_seconds: float = _setting(
        10.0, "BRIDGE_QUEUE_SAMPLE_SECONDS", "seconds between samples of the Celery task queues' lengths (own thread and broker connection; 0 = off)"
    )
    bridge_queues: str = _setting(
        "", "BRIDGE_QUEUES", "comma list of Celery task queues to sample besides those the workers report (e.g. celery,priority)"
    )
    bridge_queue_discovery: bool = _setting(
        True, "BRIDGE_QUEUE_DISCOVERY", "ask the workers for their queues and pool sizes at every sample (Celery inspect active_queues/stats, as celery-exporter)"
    )
    bridge_metrics_addr: str = _setting(
        "127.0.0.1:9464", "BRIDGE_METRICS_ADDR", "host:port of the bridge's /metrics and /healthz ('off' = none)"
    )
    bridge_redact_fields: str = _setting(
        "", "BRIDGE_REDACT_FIELDS", "comma list of args,kwargs,result to redact before events leave the bridge"
    )
    bridge_redact_mode: str = _setting("hash", "BRIDGE_REDACT_MODE", "drop | truncate | hash (sha256) for redacted fields")
    bridge_redact_max_chars: int = _setting(256, "BRIDGE_REDACT_MAX_CHARS", "characters kept by BRIDGE_REDACT_MODE=truncate")
    # Streams app
    app_id: str = _setting("celery-monitor", "STREAMS_APP_ID", "Faust application id (consumer group, changelog prefix)")
    store: str = _setting("memory://", "STREAMS_STORE", "Faust table store: memory:// or rocksdb://")
    data_dir: str = _setting(".run/faust", "STREAMS_DATA_DIR", "Faust data directory (rocksdb tables live here)")
    session_timeout: float = _setting(
        6.0, "STREAMS_SESSION_TIMEOUT", "Kafka consumer session timeout, s (Tansu's JoinGroup waits half of it)"
    )
    worker_expiry_factor: float = _setting(
        2.0, "WORKER_EXPIRY_FACTOR",
        "a worker is OFFLINE(heartbeat-expired) when nothing was received from it for this many x freq seconds of the stream's watermark",
    )
    worker_drift_threshold: float = _setting(
        16.0, "WORKER_DRIFT_THRESHOLD", "clock-drift alert when a worker's clock differs from the monitor's by more than this (s; Celery warns at 16)"
    )
    sink: str = _setting(
        "process", "STREAMS_SINK",
        "'process': `streams worker` runs the ClickHouse sink as its own child process; 'inline': as a thread inside the worker (shares its GIL); 'off': run `streams sink` yourself",
    )  # fmt: skip
    web_port: int = _setting(0, "STREAMS_WEB_PORT", "Faust web server port (0 = no web server)")
    web_host: str = _setting("127.0.0.1", "STREAMS_WEB_HOST", "Faust web server bind address (only with STREAMS_WEB_PORT)")
    streams_metrics_addr: str = _setting(
        "127.0.0.1:9465", "STREAMS_METRICS_ADDR", "host:port of the streams worker's /metrics ('off' = none)"
    )
    task_retention: float = _setting(
        3600.0, "STREAMS_TASK_RETENTION", "seconds a finished task stays in the table after its last event (0 = forever; ClickHouse keeps history)"
    )
    alert_failure_window: float = _setting(60.0, "ALERT_FAILURE_WINDOW", "failure-burst alert: window in seconds of receive time (the monitor's clock)")
    alert_failure_threshold: int = _setting(
        20, "ALERT_FAILURE_THRESHOLD", "failure-burst alert: failures of one task name within the window"
    )

    # ClickHouse sink
    clickhouse_host: str = _setting("127.0.0.1", "CLICKHOUSE_HOST", "ClickHouse host")
    clickhouse_port: int = _setting(9000, "CLICKHOUSE_PORT", "ClickHouse native TCP port")
    clickhouse_user: str = _setting("default", "CLICKHOUSE_USER", "ClickHouse user")
    clickhouse_password: str = _setting("", "CLICKHOUSE_PASSWORD", "ClickHouse password", secret=True)
    clickhouse_database: str = _setting("celery", "CLICKHOUSE_DATABASE", "ClickHouse database")
    clickhouse_secure: bool = _setting(False, "CLICKHOUSE_SECURE", "TLS to ClickHouse")
    clickhouse_cluster: str = _setting(
        "", "CLICKHOUSE_CLUSTER", "migrate: create <table>_local shards + Distributed tables for this <remote_servers> cluster ('' = one server)"
    )
    clickhouse_replicated: bool = _setting(
        True, "CLICKHOUSE_REPLICATED", "migrate with CLICKHOUSE_CLUSTER: Replicated*MergeTree shards and DDL ON CLUSTER (needs ZooKeeper/Keeper); false = plain shards, DDL run per node"
    )
    sink_group: str = _setting("celery-monitor-sink", "SINK_GROUP", "consumer group of the ClickHouse sink")
    sink_batch_rows: int = _setting(5000, "SINK_BATCH_ROWS", "rows per ClickHouse insert (at most)")
    sink_batch_seconds: float = _setting(
        1.0, "SINK_BATCH_SECONDS", "longest a batch grows while records keep coming (a quiet pipeline: inserted at once)"
    )
    sink_min_insert_interval: float = _setting(
        0.2, "SINK_MIN_INSERT_INTERVAL", "least time between two inserts (ClickHouse makes a part per insert: at most ~5 per second per table)"
    )

    # Web UI (python -m streams ui): read-only pages over ClickHouse
    ui_host: str = _setting(
        "127.0.0.1", "UI_HOST", "web UI bind address; any address but loopback needs UI_BASIC_AUTH or UI_TOKEN"
    )
    ui_port: str = _setting("9466", "UI_PORT", "web UI port ('off' = no UI, e.g. in make demo)")
    ui_basic_auth: str = _setting("", "UI_BASIC_AUTH", "user:password the web UI asks for (HTTP Basic); '' = none", secret=True)
    ui_token: str = _setting("", "UI_TOKEN", "bearer token the web UI accepts (Authorization: Bearer TOKEN); '' = none", secret=True)
    ui_row_limit: int = _setting(
        500, "UI_ROW_LIMIT", "most rows any web UI query returns (tasks per page, a task's events, workflow nodes, workers)"
    )
    ui_page_size: int = _setting(50, "UI_PAGE_SIZE", "tasks per page of the web UI's task list (capped by UI_ROW_LIMIT)")
    ui_query_timeout: float = _setting(
        5.0, "UI_QUERY_TIMEOUT", "seconds a web UI query may take (ClickHouse max_execution_time and the socket timeout); then the page says so"
    )
    ui_refresh_seconds: float = _setting(
        1.0, "UI_REFRESH_SECONDS", "how often live parts of the web UI (task list, task page, workers) reload"
    )

    # -- resolution --------------------------------------------------------------------------
    @classmethod
    def load(cls, args: argparse.Namespace | None = None, environ: dict | None = None, **overrides) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
            cli = getattr(args, f.name, None) if args is not None else None
            if cli is not None:
                values[f.name] = _convert(f, cli)
        values.update(overrides)
        return cls(**values)

    def kafka_client_options(self) -> dict:
        """Connection options for kafka-python clients (producer, consumer, admin)."""
        options: dict = {"bootstrap_servers": self.kafka_bootstrap.split(","), "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password,
            )
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        return options

    def librdkafka_options(self) -> dict:
        """The same connection settings in librdkafka's dotted names (the bridge's producer)."""
        options: dict = {"bootstrap.servers": self.kafka_bootstrap, "security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_security_protocol.startswith("SASL"):
            options.update({
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": self.kafka_sasl_username,
                "sasl.password": self.kafka_sasl_password,
            })
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_cafile:
            options["ssl.ca.location"] = self.kafka_ssl_cafile
        return options

    @property
    def bridge_queue_name(self) -> str:
        return self.bridge_queue or f"celery-monitor.bridge.{self.cluster}"

    @property
    def tansu_fixes(self) -> bool:
        return self.kafka_flavor == "tansu"

    @property
    def event_topics(self) -> tuple[str, str]:
        return (self.topic_task_events, self.topic_worker_events)

    def all_topics(self) -> list[str]:
        return [
            self.topic_task_events,
            self.topic_worker_events,
            self.topic_task_states,
            self.topic_worker_states,
            self.topic_dead_letters,
            self.topic_bridge_status,
            self.topic_alerts,
            self.topic_queue_lengths,
        ]

    def environ(self) -> dict[str, str]:
        """This process's environment with every setting in it: what a child process (the sink
        `streams worker` starts) needs to resolve the same settings, CLI flags included."""
        env = dict(os.environ)
        for f in fields(self):
            value = getattr(self, f.name)
            env[f.metadata["env"]] = str(int(value) if isinstance(value, bool) else value)
        return env

    def as_dict(self) -> dict:
        """For logs: secrets masked (a password inside a broker URL too)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = mask_url(value) if "://" in str(value) else "***"
            out[f.name] = value
        return out


def mask_url(url: str) -> str:
    """amqp://user:secret@host// -> amqp://user:***@host//"""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    kind = type(f.default)
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return raw


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """CLI flags for the named settings; defaults stay None so env/defaults apply."""
    by_name = {f.name: f for f in fields(Settings)}
    for name in names:
        f = by_name[name]
        flag = "--" + name.replace("_", "-")
        default = "" if f.metadata["secret"] else f" (default {f.default!r})"
        parser.add_argument(flag, dest=name, default=None, help=f"{f.metadata['help']}; env {f.metadata['env']}{default}")


def settings_table() -> str:
    rows = ["| env | flag | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `{f.metadata['env']}` | `--{f.name.replace('_', '-')}` | `{f.default!r}` | {f.metadata['help']} |")
    return "\n".join(rows)
