"""Raw broker message -> pack entries and dead letters (pure).

One broker message carries one event, or a list of them (``task.multi``). Each event becomes one
pack entry (schemas/pack.v2.json): the event itself, untouched, with this bridge's sequence
number, when the bridge got the message and its routing key. Routing: a ``task-*`` event with a
uuid goes to the task-events topic keyed by the uuid (any task-* type: the engine decides what
it understands); any other event with a ``hostname`` string goes to the worker-events topic keyed
``cluster/hostname`` (worker-* or a type the rules do not know: kept, never dropped). Only what is
not an event — not JSON, not an object, no type, a task event without uuid, another event
without hostname — becomes a dead letter, one per bad input, with the reason and the raw input.
bridge/packs.py groups the entries of a flush into packs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from streams.engine.events import Invalid, worker_key
from streams.packs import loads
from streams.records import dead_letter

from .redact import Redactor

TASK, WORKER, DEAD, STATUS = "task", "worker", "dead", "status"
QUEUE = "queue"  # queue-length samples (bridge/queues.py)


def topics_by_kind(settings) -> dict[str, str]:
    """The Kafka topic of each record kind (one definition for the producer and the metrics)."""
    return {
        TASK: settings.topic_task_events,
        WORKER: settings.topic_worker_events,
        DEAD: settings.topic_dead_letters,
        STATUS: settings.topic_bridge_status,
        QUEUE: settings.topic_queue_lengths,
    }


class Entry(NamedTuple):
    """One event bound for a pack: its topic kind, its partition key and the pack entry."""

    kind: str  # TASK | WORKER
    key: bytes  # task uuid | cluster/hostname (murmur2 of it picks the partition)
    item: dict  # {"seq", "received_at", "routing_key", "event"[, "redacted"]}


class Routed(NamedTuple):
    """One Kafka record. Packs have ``partition`` set, key None, and keep their entries
    (``parts``: (key, entry dict) each) and signs of life (``seen``) so that a refused pack can be
    packed again; dead letters, status records and queue-length samples are keyed and
    partitioned by the producer."""

    kind: str  # TASK | WORKER | DEAD | STATUS | QUEUE
    key: bytes | None
    value: bytes
    partition: int | None = None
    parts: tuple = ()
    seen: tuple = ()


def dead_record(cluster: str, bridge_id: str, reason: str, raw: Any, routing_key: str | None) -> Routed:
    source = {"cluster": cluster, "bridge": bridge_id, "routing_key": routing_key}
    return Routed(DEAD, None, dead_letter(Invalid(reason, raw), source, "bridge"))


class Enveloper:
    def __init__(self, cluster: str, bridge_id: str, redactor: Redactor | None = None):
        self.cluster = cluster
        self.bridge_id = bridge_id
        self.redactor = redactor
        self.gaps = None  # a GapDetector where the broker cannot redeliver (Redis)
        self.seq = 0

    def dead(self, reason: str, raw, routing_key: str | None) -> Routed:
        return dead_record(self.cluster, self.bridge_id, reason, raw, routing_key)

    def wrap(self, body: bytes, routing_key: str | None, received_at: float) -> list[Entry | Routed]:
        """The entries of one broker message body, in order, and a dead letter for each bad part."""
        try:
            decoded = loads(body)  # orjson, else Python's json: what Celery's receiver reads is read
        except ValueError as exc:
            return [self.dead(f"body is not JSON: {exc}", body, routing_key)]
        events = decoded if decoded.__class__ is list else [decoded]
        if not events:
            return [self.dead("empty event list", body, routing_key)]
        out: list[Entry | Routed] = []
        redactor, gaps = self.redactor, self.gaps
        for event in events:
            routed = self._route(event)
            if routed.__class__ is str:
                out.append(self.dead(routed, event, routing_key))
                continue
            kind, key = routed
            if kind == WORKER and gaps is not None:
                gap = gaps.on_event(event)
                if gap is not None:
                    out.append(self.status(gap))
            self.seq += 1
            item = {"seq": self.seq, "received_at": received_at, "routing_key": routing_key, "event": event}
            if redactor is not None:
                redacted = redactor(event)
                if redacted:
                    item["redacted"] = redacted
            out.append(Entry(kind, key, item))
        return out

    def status(self, record: dict) -> Routed:
        return Routed(STATUS, self.cluster.encode(), orjson.dumps(record))

    def _route(self, event) -> tuple[str, bytes] | str:
        if event.__class__ is not dict and not isinstance(event, dict):
            return f"not an event object ({type(event).__name__})"
        etype = event.get("type")
        if not etype or not isinstance(etype, str):
            return "event without a 'type' string"
        if etype.startswith("task-"):
            uuid = event.get("uuid")
            if not uuid or uuid.__class__ is not str:
                return "task event without a 'uuid' string"
            return TASK, uuid.encode()
        hostname = event.get("hostname")
        if not hostname or hostname.__class__ is not str:
            return f"{'worker' if etype.startswith('worker-') else 'non-task'} event without a 'hostname' string"
        return WORKER, worker_key(self.cluster, hostname).encode()
