"""Lengths of a Celery cluster's task queues, sampled by the bridge on its own thread and connection.

Every ``BRIDGE_QUEUE_SAMPLE_SECONDS`` the sampler of a cluster

1. asks the cluster's workers which queues they consume and how many pool processes they have
   (Celery's ``inspect().active_queues()`` and ``inspect().stats()``, what celery-exporter does
   at each scrape); queues seen once are kept for the life of the process, so a queue whose
   workers all died is still measured — that is when its backlog grows;
2. measures each of those queues plus ``BRIDGE_QUEUES`` with a passive ``queue_declare``, which
   creates nothing: on AMQP the broker's message_count and consumer_count; on Redis kombu's own
   count, the LLEN of the list and of Celery's priority sub-queues (``name``, ``name\\x06\\x163``,
   ``name\\x06\\x166``, ``name\\x06\\x169`` with the default ``priority_steps``, under any
   ``global_keyprefix``) — kombu's naming, so a transport option that changes it changes both;
3. measures this bridge's own AMQP queue too (role ``bridge``: its backlog, and the history
   ``python -m bridge queues`` lists retired clusters' queues from);
4. publishes one record per queue to ``celery.queue-lengths.v1`` (schemas/queue-length.v1.json),
   keyed ``cluster/queue``.

The event consumer never waits for any of this: its own thread, its own broker connection, and a
failed sample (broker or Kafka down) is logged and skipped — the next one replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import orjson
from kombu import Connection

from streams.config import Settings, mask_url

from .envelope import QUEUE, Routed
from .metrics import BridgeMetrics
from .producer import KafkaUnavailable

log = logging.getLogger("bridge.queues")
RECORD_VERSION = 1
INSPECT_TIMEOUT = 1.0  # seconds workers have to answer a broadcast (Celery's default)
ROLE_TASK, ROLE_BRIDGE = "task", "bridge"


def configured_queues(value: str) -> list[str]:
    """BRIDGE_QUEUES ('celery, priority') -> ['celery', 'priority']."""
    return [name.strip() for name in value.split(",") if name.strip()]


@dataclass(frozen=True)
class Depth:
    present: bool
    messages: int
    consumers: int | None  # None: the broker cannot tell (Redis)


@dataclass
class Discovery:
    """What the workers answered: queue -> workers consuming it / their pool processes."""

    workers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    processes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def discovery_from_replies(active_queues: dict | None, stats: dict | None) -> Discovery:
    """Workers and processes per queue from inspect replies (pure).

    Processes per worker: the prefork pool's process list, else ``max-concurrency`` (threads,
    solo, gevent pools have no process list; celery-exporter counts those as 0)."""
    found = Discovery()
    concurrency = {}
    for worker, info in (stats or {}).items():
        pool = (info or {}).get("pool") or {}
        processes = pool.get("processes")
        concurrency[worker] = len(processes) if isinstance(processes, list) else int(pool.get("max-concurrency") or 0)
    for worker, queues in (active_queues or {}).items():
        for queue in queues or ():
            name = queue.get("name") if isinstance(queue, dict) else None
            if name:
                found.workers[name] += 1
                found.processes[name] += concurrency.get(worker, 0)
    return found


def measure(channel_for: Callable[[], object], name: str, not_found: tuple) -> Depth:
    """A passive queue_declare: creates nothing; a missing queue is (present=False, 0).

    ``channel_for()`` returns a usable channel (AMQP closes a channel after a 404)."""
    channel = channel_for()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
    except not_found as exc:
        if "NOT_FOUND" not in str(exc) and getattr(exc, "code", None) != 404:
            raise
        return Depth(False, 0, None)
    return Depth(True, int(ok.message_count), int(ok.consumer_count))


class QueueSampler:
    """Samples one cluster's task queues every ``settings.bridge_queue_sample_seconds``."""

    def __init__(
        self,
        settings: Settings,
        bridge_id: str,
        send_all: Callable[[list[Routed]], None],
        metrics: BridgeMetrics | None = None,
        transport_options: dict | None = None,
        ssl: bool | dict = False,
    ):
        self.settings = settings
        self.bridge_id = bridge_id
        self.send_all = send_all
        self.metrics = metrics or BridgeMetrics()
        self.transport_options = transport_options or {}
        self.ssl = ssl
        self.known: dict[str, None] = dict.fromkeys(configured_queues(settings.bridge_queues))  # ordered set
        self._stop = threading.Event()
        self._app = None
        self._channel = None
        self.samples = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        interval = self.settings.bridge_queue_sample_seconds
        conn: Connection | None = None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    if conn is None:
                        conn = self._connect()
                    records = self.sample(conn)
                    self._publish(records)
                except KafkaUnavailable as exc:
                    log.warning("queue lengths of %s not published (%s); next sample in %.0fs", self.settings.cluster, exc, interval)
                except Exception as exc:  # noqa: BLE001 - a failed sample must not stop the next one
                    log.warning(
                        "queue lengths of %s not sampled (%r); next try in %.0fs (broker %s)",
                        self.settings.cluster, exc, interval, mask_url(self.settings.broker_url),
                    )
                    if conn is not None:
                        conn.release()
                        conn = None
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            if conn is not None:
                conn.release()

    def _connect(self) -> Connection:
        conn = Connection(self.settings.broker_url, connect_timeout=10, transport_options=self.transport_options, ssl=self.ssl)
        conn.ensure_connection(max_retries=1)
        self._channel = None
        return conn

    def _channel_for(self, conn: Connection):
        def channel():
            current = self._channel
            if current is None or not getattr(current, "is_open", True):
                current = self._channel = conn.channel()
            return current

        return channel

    # -- one sample ----------------------------------------------------------------------------
    def discover(self, conn: Connection) -> Discovery | None:
        if not self.settings.bridge_queue_discovery:
            return None
        if self._app is None:
            from celery import Celery

            self._app = Celery("celery-monitor-bridge", set_as_current=False)
        inspect = self._app.control.inspect(timeout=INSPECT_TIMEOUT, connection=conn)
        found = discovery_from_replies(inspect.active_queues(), inspect.stats())
        for name in found.workers:
            self.known.setdefault(name, None)
        return found

    def sample(self, conn: Connection) -> list[dict]:
        """One record per known queue (and this bridge's own AMQP queue)."""
        t0 = time.monotonic()
        found = self.discover(conn)
        t1 = time.monotonic()
        cluster = self.settings.cluster
        transport = conn.transport.driver_type
        not_found = tuple(conn.channel_errors)
        channel = self._channel_for(conn)
        queues = [(name, ROLE_TASK) for name in self.known]
        if transport == "amqp":  # on Redis the bridge reads pub/sub: nothing waits anywhere
            queues.append((self.settings.bridge_queue_name, ROLE_BRIDGE))
        at = time.time()
        records = []
        for name, role in queues:
            depth = measure(channel, name, not_found)
            records.append({
                "v": RECORD_VERSION,
                "kind": "queue-length",
                "cluster": cluster,
                "queue": name,
                "role": role,
                "transport": transport,
                "present": depth.present,
                "messages": depth.messages,
                "consumers": depth.consumers if transport == "amqp" else None,
                "workers": found.workers.get(name, 0) if found is not None and role == ROLE_TASK else None,
                "processes": found.processes.get(name, 0) if found is not None and role == ROLE_TASK else None,
                "sampled_at": at,
                "interval": self.settings.bridge_queue_sample_seconds,
                "bridge": self.bridge_id,
            })  # fmt: skip
            if role == ROLE_BRIDGE:
                self.metrics.own_queue_messages.labels(cluster).set(depth.messages)
        t2 = time.monotonic()
        self.metrics.queue_sample_seconds.labels(cluster, "discover").set(t1 - t0)
        self.metrics.queue_sample_seconds.labels(cluster, "measure").set(t2 - t1)
        self.samples += 1
        return records

    def _publish(self, records: list[dict]) -> None:
        routed = [Routed(QUEUE, f"{r['cluster']}/{r['queue']}".encode(), orjson.dumps(r)) for r in records]
        if routed:
            self.send_all(routed)
