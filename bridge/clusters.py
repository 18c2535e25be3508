"""Several Celery clusters in one bridge process: the cluster file (TOML, stdlib tomllib).

    # clusters.toml — one table per cluster; the name goes on every record and key
    [clusters.prod-eu]
    broker = "amqp://monitor:secret@rabbit-eu:5672//"
    queue = "celery-monitor.bridge.prod-eu"      # optional (AMQP); default celery-monitor.bridge.<name>
    ssl = true                                    # optional: broker TLS (true, or a table of ssl options)
    queues = ["celery", "priority"]               # optional: task queues to sample (default BRIDGE_QUEUES)
    event_exchange = "celeryev.eu"                # optional: the cluster's Celery event_exchange (default BRIDGE_EVENT_EXCHANGE)

    [clusters.batch]
    broker = "redis://redis-batch:6379/0"
    transport_options = { socket_keepalive = true }   # optional: kombu transport options

`python -m bridge --config clusters.toml` runs one consumer per cluster (each its own broker
connection, queue, envelope sequence and metrics labels) sharing one Kafka producer.  Running one
bridge process per cluster (`--broker URL --cluster NAME`) works the same; choose by isolation.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # no '/', it separates cluster and hostname in keys
KEYS = {"broker", "queue", "ssl", "transport_options", "queues", "event_exchange"}
EXCHANGE = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")  # as BRIDGE_EVENT_EXCHANGE


class ClusterConfigError(ValueError):
    """The cluster file is unusable; the message names the file, the cluster and the fix."""


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    broker_url: str
    queue: str = ""
    ssl: bool | dict = False
    transport_options: dict = field(default_factory=dict)
    queues: tuple[str, ...] | None = None  # task queues whose lengths are sampled; None: BRIDGE_QUEUES
    event_exchange: str | None = None  # Celery's event_exchange of this cluster; None: BRIDGE_EVENT_EXCHANGE


def parse_clusters(text: str, source: str = "<config>") -> list[ClusterSpec]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClusterConfigError(f"{source}: not valid TOML: {exc}") from exc
    clusters = data.get("clusters")
    if not isinstance(clusters, dict) or not clusters:
        raise ClusterConfigError(f"{source}: needs at least one [clusters.<name>] table")
    specs = []
    for name, table in clusters.items():
        where = f"{source}: [clusters.{name}]"
        if not NAME.match(name):
            raise ClusterConfigError(f"{where}: names use letters, digits, '_', '.', '-' (no '/')")
        if not isinstance(table, dict):
            raise ClusterConfigError(f"{where} must be a table")
        unknown = set(table) - KEYS
        if unknown:
            raise ClusterConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
        broker = table.get("broker")
        if not isinstance(broker, str) or "://" not in broker:
            raise ClusterConfigError(f"{where}: 'broker' must be a broker URL (amqp://... or redis://...)")
        ssl = table.get("ssl", False)
        options = table.get("transport_options", {})
        if not isinstance(ssl, (bool, dict)) or not isinstance(options, dict):
            raise ClusterConfigError(f"{where}: 'ssl' is true/false or a table; 'transport_options' is a table")
        queues = table.get("queues")
        if queues is not None and (not isinstance(queues, list) or not all(isinstance(q, str) and q for q in queues)):
            raise ClusterConfigError(f"{where}: 'queues' is a list of queue names, e.g. [\"celery\"]")
        exchange = table.get("event_exchange")
        if exchange is not None and not (isinstance(exchange, str) and EXCHANGE.match(exchange)):
            raise ClusterConfigError(f"{where}: 'event_exchange' is the cluster's Celery event_exchange: letters, digits, '.', '_', '-', ':'")
        specs.append(ClusterSpec(name, broker, str(table.get("queue", "")), ssl, dict(options), tuple(queues) if queues is not None else None,
                                 exchange))  # fmt: skip
    return specs


def load_clusters(path: str | Path) -> list[ClusterSpec]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterConfigError(f"{path}: cannot read the cluster file: {exc}") from exc
    return parse_clusters(text, str(path))
