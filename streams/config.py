"""Every setting of the pipeline, in one typed model: environment variable, CLI flag, default, meaning.

Each process resolves its settings once at start (``Settings.load``); nothing else reads
``os.environ``. Precedence: CLI flag > environment variable > default. A value that does not fit
its setting -- a choice not in the list (``STREAMS_SINK=proces``), a boolean that is not one
(``BROKER_SSL=ture``), a number out of range -- stops the process with a :class:`ConfigError`
naming the variable, its flag and what is allowed; nothing is silently defaulted.

``celery-monitor config`` prints the effective settings (secrets masked);
``celery-monitor config --markdown`` prints the reference that docs/configuration.md holds (a
test keeps the two equal). Connection options for each client library (librdkafka, Faust's
aiokafka, kafka-python, clickhouse-driver) are built from these fields in one place,
``streams.connections``.

Defaults are for a production Apache Kafka and ClickHouse; the local dev stack (``devstack``)
sets what only it needs (``KAFKA_FLAVOR=tansu``, one replica).
"""

from __future__ import annotations

import difflib
import os
import re
from contextvars import ContextVar
from typing import Any, Literal, Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

# Prefixes of variables only this product reads: an unknown one among them is probably a typo.
OWN_PREFIXES = ("STREAMS_", "BRIDGE_", "SINK_", "UI_", "TOPIC_", "ALERT_", "WORKER_", "CONTROL_")
# Prefixes other software uses too (Kafka's and ClickHouse's images, Celery apps): an unknown one is
# named only when it is close to one of ours (KAFKA_BOOTSTRAP_SERVERS, CLICKHOUSE_PASS, ...).
SHARED_PREFIXES = ("KAFKA_", "CLICKHOUSE_", "CELERY_", "BROKER_")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s,:\[\]]+):([0-9]{1,5})")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,200}")  # Kafka's legal topic characters; room for the changelog suffixes

_environ_override: ContextVar[Mapping[str, str] | None] = ContextVar("environ_override", default=None)


class ConfigError(ValueError):
    """Settings that cannot be used; the message names each variable, its flag and what is allowed."""


def setting(default: Any, env: str, help: str, group: str, secret: bool = False, **constraints) -> Any:
    """A field of :class:`Settings`: its environment variable, help text and group (which commands
    take it as a flag)."""
    return Field(default, validation_alias=env, description=help, repr=not secret,
                 json_schema_extra={"env": env, "group": group, "secret": secret}, **constraints)  # fmt: skip


# Groups, in the order docs/configuration.md lists them.
GROUPS = {
    "kafka": "Kafka connection",
    "topics": "Kafka topics",
    "broker": "Celery broker (bridge)",
    "bridge": "Bridge",
    "streams": "Streams worker",
    "clickhouse": "ClickHouse",
    "sink": "ClickHouse sink",
    "ui": "Web UI",
    "notify": "Alert delivery (notify)",
    "control": "Task control (celery-monitor control; off unless configured)",
}

KafkaFlavor = Literal["kafka", "tansu"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SinkMode = Literal["process", "inline", "off"]
RedactMode = Literal["drop", "truncate", "hash"]
REDACTABLE = ("args", "kwargs", "result")
DAY_MS = 86_400_000


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of ``os.environ``
    (tests and the dev stack resolve settings for another process without touching their own)."""

    def __init__(self, settings_cls, environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:  # the documented override point (DotEnvSettingsSource)
        return {k: v for k, v in self._environ.items() if v != ""}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", case_sensitive=True, env_ignore_empty=True, populate_by_name=True,
        validate_default=True, hide_input_in_errors=True, str_strip_whitespace=True,
    )  # fmt: skip

    # -- Kafka connection ------------------------------------------------------------------
    kafka_bootstrap: str = setting("127.0.0.1:9092", "KAFKA_BOOTSTRAP", "Kafka bootstrap servers (host:port[,host:port])", "kafka")
    kafka_flavor: KafkaFlavor = setting(
        "kafka", "KAFKA_FLAVOR",
        "kafka: Apache Kafka (or any broker that implements the protocol fully); tansu: the dev stack's Tansu broker, with "
        "corrections for its known bugs and short group timeouts", "kafka",
    )  # fmt: skip
    kafka_security_protocol: SecurityProtocol = setting(
        "PLAINTEXT", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL, for every Kafka client of the pipeline", "kafka"
    )
    kafka_sasl_mechanism: SaslMechanism = setting(
        "PLAIN", "KAFKA_SASL_MECHANISM", "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (with SASL_*)", "kafka"
    )
    kafka_sasl_username: str = setting("", "KAFKA_SASL_USERNAME", "SASL user (with SASL_*)", "kafka")
    kafka_sasl_password: SecretStr = setting("", "KAFKA_SASL_PASSWORD", "SASL password (with SASL_*)", "kafka", secret=True)
    kafka_ssl_cafile: str = setting("", "KAFKA_SSL_CAFILE", "CA bundle (PEM) to verify the brokers (with *SSL; '' = the system's)", "kafka")
    kafka_ssl_certfile: str = setting("", "KAFKA_SSL_CERTFILE", "client certificate (PEM) for mutual TLS (with *SSL)", "kafka")
    kafka_ssl_keyfile: str = setting("", "KAFKA_SSL_KEYFILE", "client key (PEM) for mutual TLS (with *SSL)", "kafka")
    kafka_ssl_key_password: SecretStr = setting("", "KAFKA_SSL_KEY_PASSWORD", "password of KAFKA_SSL_KEYFILE", "kafka", secret=True)
    kafka_ssl_check_hostname: bool = setting(
        True, "KAFKA_SSL_CHECK_HOSTNAME", "verify that a broker's certificate names the host connected to (with *SSL)", "kafka"
    )

    # -- Kafka topics ----------------------------------------------------------------------
    topic_partitions: int = setting(8, "TOPIC_PARTITIONS", "partitions of every topic the pipeline creates (and of the table changelogs)", "topics", ge=1, le=10_000)
    topic_replication_factor: int = setting(
        3, "TOPIC_REPLICATION_FACTOR", "replicas of every topic the pipeline creates (Kafka: 3 survives the loss of a broker)", "topics", ge=1
    )
    topic_min_insync_replicas: int = setting(
        2, "TOPIC_MIN_INSYNC_REPLICAS", "min.insync.replicas of every topic: a write (acks=all) waits for this many replicas", "topics", ge=1
    )
    topic_events_retention_ms: int = setting(
        7 * DAY_MS, "TOPIC_EVENTS_RETENTION_MS",
        "retention.ms of the event topics and dead letters (the raw input: a replay can start this far back; -1 = forever)", "topics",
        ge=-1,
    )  # fmt: skip
    topic_records_retention_ms: int = setting(
        7 * DAY_MS, "TOPIC_RECORDS_RETENTION_MS",
        "retention.ms of the output topics (task/worker states, alerts, queue lengths, bridge status; -1 = forever). "
        "Table changelogs are compacted, never deleted", "topics", ge=-1,
    )  # fmt: skip
    topic_task_events: str = setting(
        "celery.task-events.v2", "TOPIC_TASK_EVENTS", "task-event packs (schemas/pack.v2.json), partition = murmur2(task uuid)", "topics"
    )
    topic_worker_events: str = setting(
        "celery.worker-events.v2", "TOPIC_WORKER_EVENTS", "worker-event packs, partition = murmur2(cluster/hostname); ticks carry read_until", "topics"
    )
    topic_task_states: str = setting("celery.task-states.v1", "TOPIC_TASK_STATES", "task-state records, key = task uuid", "topics")
    topic_worker_states: str = setting("celery.worker-states.v1", "TOPIC_WORKER_STATES", "worker-state records, key = cluster/hostname", "topics")
    topic_dead_letters: str = setting("celery.dead-letters.v1", "TOPIC_DEAD_LETTERS", "inputs that are not valid events, with the reason", "topics")
    topic_alerts: str = setting(
        "celery.alerts.v1", "TOPIC_ALERTS", "alerts: task-critical, task-orphaned, failure-burst per task name, worker-lost, clock-drift, task-slow, failure-group, event-dead-lettered", "topics"
    )
    topic_bridge_status: str = setting(
        "celery.bridge-status.v1", "TOPIC_BRIDGE_STATUS", "bridge-gap records: loss detected on Redis (missed heartbeats, disconnects)", "topics"
    )
    topic_queue_lengths: str = setting(
        "celery.queue-lengths.v1", "TOPIC_QUEUE_LENGTHS", "queue-length samples of the Celery task queues, key = cluster/queue", "topics"
    )
    topic_audit: str = setting(
        "celery.audit.v1", "TOPIC_AUDIT",
        "task-control audit rows (schemas/audit.v1.json): every request of celery-monitor control, dry run or not, and its result per task, key = request id",
        "topics",
    )  # fmt: skip

    # -- Celery broker (bridge) ------------------------------------------------------------
    broker_url: str = setting(
        "amqp://guest:guest@127.0.0.1:5672//", "CELERY_BROKER_URL", "Celery broker to read events from (amqp:// or redis://; rediss:// for TLS)",
        "broker", secret=True,
    )  # fmt: skip
    cluster: str = setting("default", "CLUSTER", "name of the Celery cluster the bridge reads; on every record", "broker", min_length=1)
    broker_ssl: bool = setting(False, "BROKER_SSL", "TLS to the Celery broker (single-cluster mode; the cluster file has 'ssl' per cluster)", "broker")

    # -- Bridge -----------------------------------------------------------------------------
    bridge_queue: str = setting("", "BRIDGE_QUEUE", "AMQP: durable queue bound to the event exchange with '#' (default celery-monitor.bridge.<cluster>)", "bridge")
    bridge_event_exchange: str = setting(
        "celeryev", "BRIDGE_EVENT_EXCHANGE",
        "Celery's event_exchange: the exchange (AMQP; Redis: the pub/sub channel prefix) the cluster's workers send events to. "
        "Letters, digits, '.', '_', '-', ':'", "bridge", pattern=r"^[A-Za-z0-9._:-]{1,255}$",
    )  # fmt: skip
    bridge_queue_max_length: int = setting(
        2_000_000, "BRIDGE_QUEUE_MAX_LENGTH", "AMQP x-max-length of the bridge queue (protects the broker when the bridge is down)", "bridge",
        ge=1, le=2**63 - 1,
    )  # fmt: skip
    bridge_queue_ttl_ms: int = setting(86_400_000, "BRIDGE_QUEUE_TTL_MS", "AMQP x-message-ttl of the bridge queue (ms)", "bridge", ge=1, le=2**32 - 1)
    bridge_prefetch: int = setting(
        100, "BRIDGE_PREFETCH",
        "AMQP prefetch: unacked broker messages in flight (a flush holds at most this many; BRIDGE_BATCH_BYTES bounds their memory)", "bridge", ge=1, le=65535,
    )  # fmt: skip
    bridge_batch_size: int = setting(
        50, "BRIDGE_BATCH_SIZE",
        "broker messages per Kafka flush at most (acked together after it; half the prefetch: the broker sends the next ones meanwhile)", "bridge", ge=1,
    )  # fmt: skip
    bridge_batch_bytes: int = setting(
        2 * 1024 * 1024, "BRIDGE_BATCH_BYTES", "broker message bytes per Kafka flush at most (a task.multi body holds up to ~100 events)", "bridge", ge=1
    )
    bridge_batch_seconds: float = setting(
        0.2, "BRIDGE_BATCH_SECONDS", "longest a batch grows while messages keep coming (an idle broker: flushed at once)", "bridge", gt=0
    )
    bridge_min_flush_interval: float = setting(
        0.05, "BRIDGE_MIN_FLUSH_INTERVAL", "least time between two Kafka flushes under load (a quiet broker's message is flushed at once)", "bridge", ge=0
    )
    bridge_pack_max_bytes: int = setting(
        512 * 1024, "BRIDGE_PACK_MAX_BYTES", "a pack (one Kafka record: a flush's events for one partition) is split beyond this size", "bridge",
        ge=1024, le=4 * 1024 * 1024,
    )  # fmt: skip
    bridge_tick_seconds: float = setting(
        1.0, "BRIDGE_TICK_SECONDS", "worker-events partitions with no pack for this long get an empty pack carrying read_until", "bridge", gt=0
    )
    bridge_kafka_timeout: float = setting(
        10.0, "BRIDGE_KAFKA_TIMEOUT", "seconds Kafka has to acknowledge a batch before the bridge reports it unavailable and retries", "bridge", gt=0
    )
    bridge_queue_sample_seconds: float = setting(
        10.0, "BRIDGE_QUEUE_SAMPLE_SECONDS",
        "seconds between samples of the Celery task queues' lengths (own thread and broker connection; 0 = off)", "bridge", ge=0,
    )  # fmt: skip
    bridge_queues: str = setting(
        "", "BRIDGE_QUEUES", "comma list of Celery task queues to sample besides those the workers report (e.g. celery,priority)", "bridge"
    )
    bridge_queue_discovery: bool = setting(
        True, "BRIDGE_QUEUE_DISCOVERY",
        "ask the workers for their queues and pool sizes at every sample (Celery inspect active_queues/stats, as celery-exporter)", "bridge",
    )  # fmt: skip
    bridge_metrics_addr: str = setting("127.0.0.1:9464", "BRIDGE_METRICS_ADDR", "host:port of the bridge's /metrics and /healthz ('off' = none)", "bridge")
    bridge_redact_fields: str = setting(
        "", "BRIDGE_REDACT_FIELDS", "comma list of args, kwargs, result to redact before events leave the bridge", "bridge"
    )
    bridge_redact_mode: RedactMode = setting("hash", "BRIDGE_REDACT_MODE", "drop | truncate | hash (sha256) for redacted fields", "bridge")
    bridge_redact_max_chars: int = setting(256, "BRIDGE_REDACT_MAX_CHARS", "characters kept by BRIDGE_REDACT_MODE=truncate", "bridge", ge=0)

    # -- Streams worker ---------------------------------------------------------------------
    app_id: str = setting("celery-monitor", "STREAMS_APP_ID", "Faust application id (consumer group, changelog prefix)", "streams", min_length=1)
    store: str = setting("memory://", "STREAMS_STORE", "Faust table store: memory:// or rocksdb:// (the image has RocksDB; pip: the [rocksdb] extra)", "streams")
    data_dir: str = setting(
        "celery-monitor-data", "STREAMS_DATA_DIR", "Faust data directory: RocksDB tables live here (give it a persistent volume)", "streams"
    )
    session_timeout: float | None = setting(
        None, "STREAMS_SESSION_TIMEOUT",
        "Kafka consumer session timeout, s, of the streams worker and the sink (default by KAFKA_FLAVOR: kafka 45, tansu 6 -- "
        "Tansu's JoinGroup waits half of it)", "streams", ge=1, le=3600,
    )  # fmt: skip
    worker_expiry_factor: float = setting(
        2.0, "WORKER_EXPIRY_FACTOR",
        "a worker is OFFLINE(heartbeat-expired) when nothing was received from it for this many x freq seconds of the stream's watermark",
        "streams", gt=0,
    )  # fmt: skip
    worker_drift_threshold: float = setting(
        16.0, "WORKER_DRIFT_THRESHOLD",
        "clock-drift alert when a worker's clock differs from the monitor's by more than this (s; Celery warns at 16)", "streams", gt=0,
    )  # fmt: skip
    sink: SinkMode = setting(
        "process", "STREAMS_SINK",
        "process: `celery-monitor worker` runs the ClickHouse sink as its own child process; inline: as a thread inside the worker "
        "(shares its GIL); off: run `celery-monitor sink` yourself", "streams",
    )  # fmt: skip
    web_port: int = setting(0, "STREAMS_WEB_PORT", "Faust web server port (0 = no web server)", "streams", ge=0, le=65535)
    web_host: str = setting("127.0.0.1", "STREAMS_WEB_HOST", "Faust web server bind address (only with STREAMS_WEB_PORT)", "streams")
    streams_metrics_addr: str = setting(
        "127.0.0.1:9465", "STREAMS_METRICS_ADDR", "host:port of the streams worker's /metrics and /healthz ('off' = none)", "streams"
    )
    task_retention: float = setting(
        3600.0, "STREAMS_TASK_RETENTION",
        "seconds a finished task stays in the table after its last event (0 = forever; ClickHouse keeps history)", "streams", ge=0,
    )  # fmt: skip
    alert_failure_window: float = setting(
        60.0, "ALERT_FAILURE_WINDOW", "failure-burst alert: window in seconds of receive time (the monitor's clock)", "streams", gt=0
    )
    alert_failure_threshold: int = setting(
        20, "ALERT_FAILURE_THRESHOLD", "failure-burst alert: failures of one task name within the window", "streams", ge=1
    )
    alert_slow_runtime: float = setting(
        0.0, "ALERT_SLOW_RUNTIME",
        "task-slow alert: a task that finished with a runtime (Celery's, seconds) of at least this (0 = no task-slow alerts)",
        "streams", ge=0,
    )  # fmt: skip
    alert_group_quiet: float = setting(
        86400.0, "ALERT_GROUP_QUIET",
        "failure-group alert: a failure group (name, exception type, message fingerprint) failing for the first time, or again "
        "after this many quiet seconds of the monitor's clock (0 = no failure-group alerts)", "streams", ge=0,
    )  # fmt: skip

    # -- ClickHouse -------------------------------------------------------------------------
    clickhouse_host: str = setting("127.0.0.1", "CLICKHOUSE_HOST", "ClickHouse host", "clickhouse", min_length=1)
    clickhouse_port: int = setting(9000, "CLICKHOUSE_PORT", "ClickHouse native TCP port (9440: the usual TLS port)", "clickhouse", ge=1, le=65535)
    clickhouse_user: str = setting("default", "CLICKHOUSE_USER", "ClickHouse user", "clickhouse")
    clickhouse_password: SecretStr = setting("", "CLICKHOUSE_PASSWORD", "ClickHouse password", "clickhouse", secret=True)
    clickhouse_database: str = setting("celery", "CLICKHOUSE_DATABASE", "ClickHouse database (an identifier)", "clickhouse")
    clickhouse_secure: bool = setting(False, "CLICKHOUSE_SECURE", "TLS to ClickHouse (its secure native port, e.g. 9440)", "clickhouse")
    clickhouse_ca_certs: str = setting("", "CLICKHOUSE_CA_CERTS", "CA bundle (PEM) to verify ClickHouse's certificate ('' = the system's)", "clickhouse")
    clickhouse_verify: bool = setting(True, "CLICKHOUSE_VERIFY", "verify ClickHouse's TLS certificate (with CLICKHOUSE_SECURE)", "clickhouse")
    clickhouse_cluster: str = setting(
        "", "CLICKHOUSE_CLUSTER",
        "migrate: create <table>_local shards + Distributed tables for this <remote_servers> cluster ('' = one server)", "clickhouse",
    )  # fmt: skip
    clickhouse_replicated: bool = setting(
        True, "CLICKHOUSE_REPLICATED",
        "migrate with CLICKHOUSE_CLUSTER: Replicated*MergeTree shards and DDL ON CLUSTER (needs ZooKeeper/Keeper); false = plain shards, "
        "DDL run per node", "clickhouse",
    )  # fmt: skip

    # -- ClickHouse sink --------------------------------------------------------------------
    sink_group: str = setting("celery-monitor-sink", "SINK_GROUP", "consumer group of the ClickHouse sink", "sink", min_length=1)
    sink_batch_rows: int = setting(5000, "SINK_BATCH_ROWS", "rows per ClickHouse insert (at most)", "sink", ge=1)
    sink_batch_seconds: float = setting(
        1.0, "SINK_BATCH_SECONDS", "longest a batch grows while records keep coming (a quiet pipeline: inserted at once)", "sink", gt=0
    )
    sink_min_insert_interval: float = setting(
        0.2, "SINK_MIN_INSERT_INTERVAL",
        "least time between two inserts (ClickHouse makes a part per insert: at most ~5 per second per table)", "sink", ge=0,
    )  # fmt: skip
    sink_metrics_addr: str = setting(
        "off", "SINK_METRICS_ADDR", "host:port of a separate `celery-monitor sink`'s /healthz and /metrics ('off' = none)", "sink"
    )

    # -- Web UI -----------------------------------------------------------------------------
    ui_host: str = setting("127.0.0.1", "UI_HOST", "web UI bind address; any address but loopback needs UI_BASIC_AUTH or UI_TOKEN", "ui")
    ui_port: str = setting("9466", "UI_PORT", "web UI port ('off' = no UI, e.g. in make demo)", "ui")
    ui_basic_auth: SecretStr = setting("", "UI_BASIC_AUTH", "user:password the web UI asks for (HTTP Basic); '' = none", "ui", secret=True)
    ui_token: SecretStr = setting("", "UI_TOKEN", "bearer token the web UI accepts (Authorization: Bearer TOKEN); '' = none", "ui", secret=True)
    ui_users_file: str = setting(
        "", "UI_USERS_FILE",
        "TOML file of web UI users (hashed passwords) and tokens (sha256), each with a role: viewer or operator (docs/control.md); "
        "UI_BASIC_AUTH and UI_TOKEN are viewers", "ui",
    )  # fmt: skip
    ui_row_limit: int = setting(
        500, "UI_ROW_LIMIT", "most rows any web UI query returns (tasks per page, a task's events, workflow nodes, workers)", "ui", ge=1
    )
    ui_page_size: int = setting(50, "UI_PAGE_SIZE", "tasks per page of the web UI's task list (capped by UI_ROW_LIMIT)", "ui", ge=1)
    ui_query_timeout: float = setting(
        5.0, "UI_QUERY_TIMEOUT",
        "seconds a web UI query may take (ClickHouse max_execution_time and the socket timeout); then the page says so", "ui", gt=0,
    )  # fmt: skip
    ui_refresh_seconds: float = setting(
        1.0, "UI_REFRESH_SECONDS", "how often live parts of the web UI (task list, task page, workers) reload", "ui", gt=0
    )

    mcp_port: str = setting(
        "9467", "MCP_PORT", "celery-monitor mcp --transport http: its port, on UI_HOST and with the UI's auth (UI_BASIC_AUTH / UI_TOKEN)", "ui"
    )

    # -- alert delivery ---------------------------------------------------------------------
    notify_rules: str = setting(
        "", "NOTIFY_RULES", "celery-monitor notify: the rules file (TOML: which alerts go to which Apprise URLs; docs/notify.md)", "notify"
    )
    notify_group: str = setting("celery-monitor-notify", "NOTIFY_GROUP", "consumer group of celery-monitor notify", "notify", min_length=1)
    notify_ui_url: str = setting(
        "http://127.0.0.1:9466", "NOTIFY_UI_URL", "the web UI's address as people reach it: every message links to its page there", "notify"
    )
    notify_metrics_addr: str = setting(
        "127.0.0.1:9468", "NOTIFY_METRICS_ADDR", "host:port of celery-monitor notify's /metrics and /healthz ('off' = none)", "notify"
    )
    notify_retries: int = setting(
        5, "NOTIFY_RETRIES", "delivery attempts per message and channel (backoff 1, 2, 4... s) before a recorded give-up", "notify", ge=1
    )

    # -- task control -----------------------------------------------------------------------
    control_url: str = setting(
        "", "CONTROL_URL",
        "the UI and API: where celery-monitor control listens (e.g. http://127.0.0.1:9469); '' = task control off (no buttons, "
        "the API refuses)", "control",
    )  # fmt: skip
    control_secret: SecretStr = setting(
        "", "CONTROL_SECRET",
        "shared secret (at least 32 characters) the UI signs control requests with (HMAC-SHA256) and celery-monitor control checks",
        "control", secret=True,
    )  # fmt: skip
    control_host: str = setting("127.0.0.1", "CONTROL_HOST", "celery-monitor control: bind address", "control")
    control_port: int = setting(9469, "CONTROL_PORT", "celery-monitor control: port", "control", ge=1, le=65535)
    control_max_tasks: int = setting(
        100, "CONTROL_MAX_TASKS", "most tasks one real (not dry) run acts on; the rest of the selection is reported as not done", "control",
        ge=1, le=100_000,
    )  # fmt: skip
    control_select_limit: int = setting(
        10_000, "CONTROL_SELECT_LIMIT", "most tasks a selection may hold (a larger one is refused: narrow the filter)", "control",
        ge=1, le=1_000_000,
    )  # fmt: skip
    control_retry_tasks: str = setting(
        "", "CONTROL_RETRY_TASKS",
        "comma list of task-name globs a retry may re-send (e.g. proj.tasks.*); '' = any name but Celery's own celery.* "
        "(names and arguments come from events: list what may be re-sent)", "control",
    )  # fmt: skip
    control_reply_timeout: float = setting(
        1.0, "CONTROL_REPLY_TIMEOUT", "seconds a revoke waits for the workers' replies (Celery's control reply)", "control", gt=0, le=60
    )
    control_timeout: float = setting(
        60.0, "CONTROL_TIMEOUT", "seconds the UI waits for celery-monitor control's answer", "control", gt=0
    )

    # -- validation -------------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        environ = _environ_override.get()
        env = env_settings if environ is None else _EnvironSource(settings_cls, environ)
        return (init_settings, env)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_flavor", "sink", "bridge_redact_mode", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        bad = [s for s in servers if not ((m := _HOST_PORT.fullmatch(s)) and 0 < int(m.group(2)) < 65536)]
        if not servers or bad:
            raise ValueError(f"expected host:port[,host:port...] with ports 1-65535, got {', '.join(bad) or 'nothing'}")
        return ",".join(servers)

    @field_validator("topic_task_events", "topic_worker_events", "topic_task_states", "topic_worker_states", "topic_dead_letters",
                     "topic_alerts", "topic_bridge_status", "topic_queue_lengths", "topic_audit", "app_id")  # fmt: skip
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.fullmatch(value):
            raise ValueError("Kafka topic names (and the app id, which prefixes its topics) take letters, digits, '.', '_', '-' only, at most 200")
        return value

    @field_validator("topic_events_retention_ms", "topic_records_retention_ms")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value != -1 and value < 60_000:
            raise ValueError("must be -1 (forever) or at least 60000 (a minute)")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value not in ("memory://", "rocksdb://"):
            raise ValueError("must be memory:// or rocksdb://")
        return value

    @field_validator("clickhouse_database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):  # it is written into SQL text
            raise ValueError("must be an identifier (letters, digits, _; not starting with a digit)")
        return value

    @field_validator("bridge_redact_fields")
    @classmethod
    def _redactable(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in REDACTABLE]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(REDACTABLE)}")
        return ",".join(names)

    @field_validator("bridge_metrics_addr", "streams_metrics_addr", "sink_metrics_addr", "notify_metrics_addr")
    @classmethod
    def _address(cls, value: str) -> str:
        text = value.strip()
        if text.lower() in ("", "off"):
            return "off"
        port = text.rpartition(":")[2]
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, :port or off")
        return text

    @field_validator("ui_port", "mcp_port")
    @classmethod
    def _ui_port(cls, value: str) -> str:
        text = str(value).strip()
        if text.lower() in ("", "off"):
            return "off"
        if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
            raise ValueError("expected a port number or off")
        return text

    @field_validator("ui_basic_auth")
    @classmethod
    def _basic_auth(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        user, colon, password = text.partition(":")
        if text and not (colon and user and password):
            raise ValueError("must be user:password, both not empty")
        return value

    @field_validator("control_secret")
    @classmethod
    def _control_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return value

    @field_validator("control_url")
    @classmethod
    def _control_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            raise ValueError("must be an http:// or https:// URL, or '' (task control off)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.control_url and not self.secret("control_secret"):
            raise ValueError("CONTROL_URL needs CONTROL_SECRET (the UI signs every control request with it)")
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) is above TOPIC_REPLICATION_FACTOR "
                f"({self.topic_replication_factor}): every write would fail"
            )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (mutual TLS)")
        topics = self.all_topics()
        doubled = sorted({t for t in topics if topics.count(t) > 1})
        if doubled:
            raise ValueError(f"topic {', '.join(doubled)} is set for two purposes: every TOPIC_* must name its own topic")
        return self

    # -- resolution -------------------------------------------------------------------------
    @classmethod
    def load(cls, cli: Mapping[str, Any] | Any | None = None, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """The settings of this process: ``overrides`` > ``cli`` (a mapping or an argparse
        namespace of field name -> value; None = not given) > ``environ`` (default ``os.environ``)
        > defaults. Raises :class:`ConfigError` naming every bad variable."""
        given = dict(cli) if isinstance(cli, Mapping) else dict(vars(cli)) if cli is not None else {}
        values = {name: value for name, value in given.items() if name in cls.model_fields and value is not None}
        values.update(overrides)
        token = _environ_override.set(environ)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(explain(exc, values)) from None
        finally:
            _environ_override.reset(token)

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` (field names), validated like a load."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        try:
            return type(self).model_validate(values)
        except ValidationError as exc:
            raise ConfigError(explain(exc, changes)) from None

    # -- derived ----------------------------------------------------------------------------
    @property
    def bridge_queue_name(self) -> str:
        return self.bridge_queue or f"celery-monitor.bridge.{self.cluster}"

    @property
    def tansu_fixes(self) -> bool:
        return self.kafka_flavor == "tansu"

    @property
    def group_session_timeout(self) -> float:
        """Seconds: STREAMS_SESSION_TIMEOUT, else the flavor's (Kafka's own default; Tansu's
        JoinGroup waits half the session timeout, so short ones there)."""
        if self.session_timeout is not None:
            return self.session_timeout
        return 6.0 if self.tansu_fixes else 45.0

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
            self.topic_audit,
        ]

    def secret(self, name: str) -> str:
        """The clear text of a secret setting (only for the client that needs it)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def environ(self) -> dict[str, str]:
        """This process's environment with every setting in it: what a child process (the sink
        `celery-monitor worker` starts, the dev stack's processes) needs to resolve the same
        settings, CLI flags included."""
        env = dict(os.environ)
        for name, info in type(self).model_fields.items():
            value = self.secret(name)
            if value is None:
                env.pop(_env(info), None)
                continue
            env[_env(info)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env

    def as_dict(self, changed_only: bool = False) -> dict:
        """For logs and `celery-monitor config`: secrets masked (a password inside a broker URL too);
        ``changed_only``: only the settings not at their defaults (what a start-up line needs)."""
        out = {}
        for name, info in type(self).model_fields.items():
            value = self.secret(name)
            if changed_only:
                default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
                if value == default:
                    continue
            if _extra(info)["secret"] and value:
                value = mask_url(value) if "://" in str(value) else "***"
            out[name] = value
        return out


def _extra(info: FieldInfo) -> dict:
    return info.json_schema_extra  # type: ignore[return-value]


def _env(info: FieldInfo) -> str:
    return _extra(info)["env"]


def field_env(name: str) -> str:
    """The environment variable of a setting, e.g. 'BRIDGE_METRICS_ADDR'."""
    info = Settings.model_fields.get(name)
    return _env(info) if info is not None else name.upper()


def field_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def explain(exc: ValidationError, given: Mapping[str, Any]) -> str:
    """One line per bad setting: variable (or flag) = value: what is wrong."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        info = Settings.model_fields.get(name)
        if info is None:  # loc is the alias (the env var) when the value came from the environment
            match = next((n for n, i in Settings.model_fields.items() if _env(i) == name), None)
            name, info = (match, Settings.model_fields[match]) if match else (name, None)
        message = error["msg"].removeprefix("Value error, ")
        if info is None:
            lines.append(message if not name else f"{name}: {message}")
            continue
        source = f"{field_flag(name)}" if name in given else _env(info)
        value = error.get("input")
        shown = "***" if _extra(info)["secret"] else repr(value)
        where = _env(info) if info.annotation is SecretStr else f"{_env(info)} or {field_flag(name)}"
        lines.append(f"{source}={shown}: {message} (set {where}; `celery-monitor config --markdown` lists every setting)")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Variables no setting reads that look meant for one (probably typos), each with the closest
    known name: every unknown one with this product's own prefixes, and those with a shared prefix
    that are close to a setting's name."""
    known = {_env(i) for i in Settings.model_fields.values()}
    extra = {"RUN_DIR", "CLICKHOUSE_HTTP_PORT", "RABBITMQ_PORT", "REDIS_PORT", "STREAMS_TEST_EVENTS", "UI_SCREENSHOTS"}
    out = []
    for name in sorted(environ):
        if name in known or name in extra:
            continue
        if name.startswith(OWN_PREFIXES):
            close = difflib.get_close_matches(name, known, n=1)
            out.append(f"{name} (did you mean {close[0]}?)" if close else name)
        elif name.startswith(SHARED_PREFIXES):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            if close:
                out.append(f"{name} (did you mean {close[0]}?)")
    return out


def mask_url(url: str) -> str:
    """amqp://user:secret@host// -> amqp://user:***@host//"""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def fields_of(*groups: str) -> list[str]:
    """The setting names of some groups, in model order."""
    return [name for name, info in Settings.model_fields.items() if _extra(info)["group"] in groups]


def _type_text(name: str, info: FieldInfo) -> str:
    annotation = info.annotation
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) is Literal:
        return " \\| ".join(args)
    if annotation is SecretStr:
        return "secret"
    if args:  # Optional[x]
        return " \\| ".join(a.__name__ for a in args if a is not type(None)) + " (optional)"
    return getattr(annotation, "__name__", str(annotation))


def settings_markdown() -> str:
    """docs/configuration.md: every setting by group -- variable, flag, type, default, meaning."""
    out = [
        "# Configuration",
        "",
        "Generated from `streams/config.py` by `celery-monitor config --markdown`; a test keeps this file equal to it.",
        "",
        "Every process resolves its settings once at start. Precedence: CLI flag > environment variable > default.",
        "A value that does not fit (a choice not listed, a boolean other than true/false/1/0/yes/no/on/off, a number out",
        "of range) stops the process with an error naming the variable. Secrets are never printed or logged.",
        "`celery-monitor config` prints the effective settings of the current environment (secrets masked).",
        "",
    ]
    for group, title in GROUPS.items():
        out += [f"## {title}", "", "| variable | flag | type | default | meaning |", "|---|---|---|---|---|"]
        for name in fields_of(group):
            info = Settings.model_fields[name]
            default = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
            shown = "''" if default == "" else ("unset" if default is None else f"`{default!r}`".replace("|", "\\|"))
            flag = "(environment only)" if _extra(info)["secret"] and info.annotation is SecretStr else f"`{field_flag(name)}`"
            out.append(f"| `{_env(info)}` | {flag} | {_type_text(name, info)} | {shown} | {info.description.replace('|', chr(92) + '|')} |")
        out.append("")
    out += [
        "The local dev stack (`python -m devstack`, behind `make up`) sets `KAFKA_FLAVOR=tansu`,",
        "`TOPIC_REPLICATION_FACTOR=1` and `TOPIC_MIN_INSYNC_REPLICAS=1` for what it starts (`python -m devstack env`",
        "prints them), and also reads `RUN_DIR` (default `.run`), `CLICKHOUSE_HTTP_PORT` (8123), `RABBITMQ_PORT`",
        "(5672), `REDIS_PORT` (6379) and `TANSU_STORAGE` (`memory` or `s3`). Every server it starts binds to 127.0.0.1.",
        "",
    ]
    return "\n".join(out)


def effective_table(settings: Settings) -> str:
    """`celery-monitor config`: each setting's effective value (secrets masked) and where it came from."""
    values = settings.as_dict()
    width = max(len(_env(i)) for i in Settings.model_fields.values())
    lines = []
    for group, title in GROUPS.items():
        lines.append(f"# {title}")
        for name in fields_of(group):
            value = values[name]
            if name == "session_timeout" and value is None:
                value = f"unset (by flavor: {settings.group_session_timeout:g})"
            lines.append(f"{_env(Settings.model_fields[name]):<{width}}  {value}")
    return "\n".join(lines)
