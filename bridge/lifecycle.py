"""The bridge queue's lifecycle: ``python -m bridge queues`` and ``python -m bridge forget``.

On AMQP every bridge declares a durable queue ``celery-monitor.bridge.<cluster>`` bound to the
event exchange (``celeryev``, or BRIDGE_EVENT_EXCHANGE) with ``#``. It outlives its bridge on
purpose (no event is lost across a restart), so a cluster that is retired or renamed leaves a
queue that keeps collecting every event of the exchange until ``x-max-length`` / ``x-message-ttl``.

Listing. AMQP has no "list queues" operation (RabbitMQ's management API and ``rabbitmqctl``
are not the product's to require), so the candidates are names we know, each checked with a
passive ``queue_declare`` (depth and consumer count; it creates nothing):

* the configured clusters (``--config clusters.toml``, or ``--cluster``/``CLUSTER`` and
  ``BRIDGE_QUEUE``) on their own brokers;
* every bridge queue the pipeline has seen: each bridge samples its own queue into
  ``celery.queue-lengths.v1`` (role ``bridge``), so ClickHouse's ``queue_lengths`` remembers
  retired clusters' queues (for the retention kept there) — checked on every broker given;
* ``--queue NAME``: any other name.

Forgetting deletes one queue after a passive declare shows no consumer, and deletes it with
``if_unused`` so RabbitMQ itself refuses should a bridge attach in between. On Redis there is
nothing to list or delete: the bridge subscribes to pub/sub, and nothing waits for it.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Iterable

from kombu import Connection
from tabulate import tabulate

from streams.config import Settings, mask_url

from .clusters import load_clusters

log = logging.getLogger("bridge.lifecycle")
PREFIX = "celery-monitor.bridge."


@dataclass(frozen=True)
class Candidate:
    cluster: str
    queue: str
    broker: str | None  # None: check on every broker we know
    source: str  # config | cluster | history | queue
    configured: bool = False
    last_sampled: float | None = None


@dataclass(frozen=True)
class Found:
    candidate: Candidate
    broker: str
    present: bool
    messages: int = 0
    consumers: int = 0
    error: str = ""

    @property
    def status(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if not self.present:
            return "absent"
        return "consumed" if self.consumers else "NO CONSUMER (filling up?)"


def queue_of(cluster: str, queue: str = "") -> str:
    return queue or f"{PREFIX}{cluster}"


def configured(args, settings: Settings) -> list[Candidate]:
    if args.config:
        return [Candidate(s.name, queue_of(s.name, s.queue), s.broker_url, "config", True) for s in load_clusters(args.config)]
    return [Candidate(settings.cluster, settings.bridge_queue_name, settings.broker_url, "cluster", True)]


def from_history(settings: Settings) -> tuple[list[Candidate], str]:
    """Bridge queues the pipeline sampled (ClickHouse queue_lengths, role bridge); ('', why) if unreachable."""
    try:
        from streams.clickhouse import connect

        client = connect(settings)
        rows = client.execute(
            f"SELECT cluster, queue, max(sampled_at) FROM {settings.clickhouse_database}.queue_lengths "
            "WHERE role = 'bridge' GROUP BY cluster, queue ORDER BY cluster, queue"
        )
        client.disconnect()
    except Exception as exc:  # noqa: BLE001 - history is a help, not a requirement
        why = " ".join(str(exc).split())[:200]
        return [], f"bridge queues seen so far not read from ClickHouse ({exc.__class__.__name__}: {why}); run `python -m streams migrate`?"
    return [Candidate(cluster, queue, None, "history", last_sampled=at) for cluster, queue, at in rows], ""


def merge(candidates: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per (queue, broker): a configured one wins over history (it knows its broker)."""
    by_queue: dict[str, Candidate] = {}
    for candidate in candidates:
        known = by_queue.get(candidate.queue)
        if known is None or (known.broker is None and candidate.broker is not None):
            last = candidate.last_sampled if candidate.last_sampled is not None else (known.last_sampled if known else None)
            by_queue[candidate.queue] = Candidate(
                candidate.cluster, candidate.queue, candidate.broker, candidate.source, candidate.configured or bool(known and known.configured), last
            )
        elif candidate.last_sampled is not None and known.last_sampled is None:
            by_queue[candidate.queue] = Candidate(known.cluster, known.queue, known.broker, known.source, known.configured, candidate.last_sampled)
    return sorted(by_queue.values(), key=lambda c: (c.cluster, c.queue))


def inspect_queue(conn: Connection, name: str) -> tuple[bool, int, int]:
    """(present, messages, consumers) by a passive declare on a fresh channel (a 404 closes it)."""
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
    except conn.channel_errors as exc:
        if getattr(exc, "code", None) == 404 or "NOT_FOUND" in str(exc):
            return False, 0, 0
        raise
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a channel the broker already closed
            pass
    return True, int(ok.message_count), int(ok.consumer_count)


def survey(candidates: list[Candidate], brokers: list[str]) -> tuple[list[Found], list[str]]:
    """Check every candidate on its broker (history ones on every AMQP broker); notes for the rest."""
    found, notes = [], []
    amqp = []
    for broker in dict.fromkeys(brokers):
        with Connection(broker, connect_timeout=10) as conn:
            if conn.transport.driver_type != "amqp":
                notes.append(f"{mask_url(broker)}: {conn.transport.driver_type} — the bridge reads pub/sub there; no queue collects events")
            else:
                amqp.append(broker)
    for broker in amqp:
        with Connection(broker, connect_timeout=10) as conn:
            conn.ensure_connection(max_retries=1)
            for candidate in candidates:
                if candidate.broker not in (None, broker):
                    continue
                try:
                    present, messages, consumers = inspect_queue(conn, candidate.queue)
                except Exception as exc:  # noqa: BLE001 - shown in the table, the others are still listed
                    found.append(Found(candidate, broker, False, error=str(exc)[:80]))
                    continue
                if present or candidate.broker is not None:
                    found.append(Found(candidate, broker, present, messages, consumers))
    unchecked = {c.queue for c in candidates if c.broker is None} - {f.candidate.queue for f in found}
    for queue in sorted(unchecked):
        notes.append(f"{queue}: seen in the history, not on the broker(s) checked ({', '.join(mask_url(b) for b in amqp) or 'none'})")
    return found, notes


def render(found: list[Found]) -> str:
    import datetime as dt

    rows = []
    for f in found:
        last = f.candidate.last_sampled
        rows.append([
            f.candidate.cluster, f.candidate.queue, mask_url(f.broker), f.messages if f.present else "", f.consumers if f.present else "",
            f.status, "yes" if f.candidate.configured else "no",
            dt.datetime.fromtimestamp(last, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if last else "",
        ])  # fmt: skip
    return tabulate(rows, headers=["cluster", "queue", "broker", "messages", "consumers", "status", "configured", "last sampled (UTC)"])


def as_dict(found: Found) -> dict:
    c = found.candidate
    return {"cluster": c.cluster, "queue": c.queue, "broker": mask_url(found.broker), "present": found.present,
            "messages": found.messages, "consumers": found.consumers, "status": found.status, "configured": c.configured,
            "source": c.source, "last_sampled": c.last_sampled}  # fmt: skip


def cmd_queues(args, settings: Settings) -> int:
    candidates = configured(args, settings) + [Candidate(c, queue_of(c), settings.broker_url, "cluster") for c in args.clusters]
    candidates += [Candidate(q.removeprefix(PREFIX), q, settings.broker_url, "queue") for q in args.queues]
    notes = []
    if not args.no_history:
        history, note = from_history(settings)
        candidates += history
        notes += [note] if note else []
    candidates = merge(candidates)
    brokers = [c.broker for c in candidates if c.broker] + [settings.broker_url]
    found, more = survey(candidates, brokers)
    if args.format == "json":
        print(json.dumps([as_dict(f) for f in found], indent=2))
        for note in notes + more:
            print(f"note: {note}", file=sys.stderr)
        return 0
    print(render(found) if found else "(no bridge queue found)")
    for note in notes + more:
        print(f"note: {note}")
    if any(f.present and not f.consumers for f in found):
        print("A queue without consumer keeps collecting every event of its vhost (up to BRIDGE_QUEUE_MAX_LENGTH);\n"
              "start its bridge again, or `python -m bridge forget --cluster NAME` for a retired cluster.")  # fmt: skip
    return 0


def is_bridge_queue(queue: str, args, settings: Settings) -> bool:
    """Whether ``queue`` is one this product's bridges declare: named by the prefix, configured as
    a bridge queue (BRIDGE_QUEUE, the cluster file), or sampled as one (ClickHouse history).
    ``forget`` deletes only those: any other queue may hold a Celery cluster's tasks."""
    if queue.startswith(PREFIX) or queue in {c.queue for c in configured(args, settings)}:
        return True
    history, _ = from_history(settings)
    return queue in {c.queue for c in history}


def cmd_forget(args, settings: Settings) -> int:
    cluster = args.forget_cluster
    spec = next((s for s in (load_clusters(args.config) if args.config else []) if s.name == cluster), None)
    queue = args.queue_name or queue_of(cluster, spec.queue if spec else "")
    broker = spec.broker_url if spec else settings.broker_url
    if not is_bridge_queue(queue, args, settings):
        print(
            f"refused: {queue} is not a bridge queue of this product (not {PREFIX}<cluster>, not configured as a "
            "bridge queue, never sampled as one): it may be a Celery task queue. Delete it with the broker's own tools "
            "if you mean to.",
            file=sys.stderr,
        )
        return 1
    with Connection(broker, connect_timeout=10) as conn:
        conn.ensure_connection(max_retries=1)
        if conn.transport.driver_type != "amqp":
            print(f"{mask_url(broker)} is {conn.transport.driver_type}: the bridge reads pub/sub there and leaves no queue; nothing to forget")
            return 0
        present, messages, consumers = inspect_queue(conn, queue)
        if not present:
            print(f"no queue {queue} on {mask_url(broker)}: nothing to forget")
            return 0
        if consumers:
            print(
                f"refused: {queue} on {mask_url(broker)} has {consumers} consumer(s) — a bridge still reads it. "
                f"Stop that bridge (cluster {cluster}) first; forget only retired clusters.",
                file=sys.stderr,
            )
            return 1
        if args.dry_run:
            print(f"would delete {queue} on {mask_url(broker)}: {messages} events never bridged, no consumer")
            return 0
        channel = conn.channel()
        try:
            # if_unused: RabbitMQ refuses itself should a bridge have attached since the check.
            channel.queue_delete(queue=queue, if_unused=True)
        except conn.channel_errors as exc:
            print(f"refused by the broker: {queue}: {exc} (a consumer attached meanwhile?)", file=sys.stderr)
            return 1
    print(f"deleted {queue} on {mask_url(broker)}: {messages} events never bridged were dropped")
    if spec is not None or (not args.config and cluster == settings.cluster):
        print(f"note: cluster {cluster} is still configured; a bridge started with it declares the queue again", file=sys.stderr)
    return 0
