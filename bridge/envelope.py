"""Raw broker message -> Kafka records (pure).

One broker message carries one event, or a list of them (``task.multi``).  Each event becomes
one record: the event itself, untouched, inside an envelope (schemas/envelope.v1.json) that
adds the cluster, this bridge's id, when the bridge got it and a per-bridge sequence number.
Task events are keyed by task uuid, worker events by ``cluster/hostname``.  Anything that is
not an event becomes a dead letter with the reason and the raw bytes.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from streams.engine.codec import exact
from streams.engine.events import Invalid, worker_key
from streams.records import dead_letter

from .redact import Redactor

ENVELOPE_VERSION = 1
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


class Routed(NamedTuple):
    kind: str  # TASK | WORKER | DEAD | STATUS | QUEUE
    key: bytes | None
    value: bytes


class Enveloper:
    def __init__(self, cluster: str, bridge_id: str, redactor: Redactor | None = None):
        self.cluster = cluster
        self.bridge_id = bridge_id
        self.redactor = redactor
        self.gaps = None  # a GapDetector where the broker cannot redeliver (Redis)
        self.seq = 0

    def _dead(self, reason: str, raw, routing_key: str | None) -> Routed:
        source = {"cluster": self.cluster, "bridge": self.bridge_id, "routing_key": routing_key}
        return Routed(DEAD, None, dead_letter(Invalid(reason, raw), source, "bridge"))

    def wrap(self, body: bytes, routing_key: str | None, received_at: float) -> list[Routed]:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [self._dead(f"body is not JSON: {exc}", body, routing_key)]
        events = decoded if isinstance(decoded, list) else [decoded]
        if not events:
            return [self._dead("empty event list", body, routing_key)]
        out = []
        for event in events:
            routed = self._route(event, routing_key)
            if isinstance(routed, str):
                out.append(self._dead(routed, event, routing_key))
                continue
            kind, key = routed
            if kind == WORKER and self.gaps is not None:
                gap = self.gaps.on_event(event)
                if gap is not None:
                    out.append(self.status(gap))
            self.seq += 1
            envelope = {
                "v": ENVELOPE_VERSION,
                "cluster": self.cluster,
                "bridge": self.bridge_id,
                "seq": self.seq,
                "received_at": received_at,
                "routing_key": routing_key,
                "event": event,
            }
            if self.redactor is not None:
                redacted = self.redactor(event)
                if redacted:
                    envelope["redacted"] = redacted
            try:
                value = exact(orjson.dumps(envelope))
            except TypeError as exc:  # e.g. an integer beyond 64 bits
                out.append(self._dead(f"event cannot be re-encoded: {exc}", body, routing_key))
                continue
            out.append(Routed(kind, key, value))
        return out

    def status(self, record: dict) -> Routed:
        return Routed(STATUS, self.cluster.encode(), orjson.dumps(record))

    def _route(self, event, routing_key) -> tuple[str, bytes] | str:
        if not isinstance(event, dict):
            return f"not an event object ({type(event).__name__})"
        etype = event.get("type")
        if not isinstance(etype, str):
            return "event without a 'type' string"
        if etype.startswith("task-"):
            uuid = event.get("uuid")
            if not isinstance(uuid, str) or not uuid:
                return "task event without a 'uuid' string"
            return TASK, uuid.encode()
        if etype.startswith("worker-"):
            hostname = event.get("hostname")
            if not isinstance(hostname, str) or not hostname:
                return "worker event without a 'hostname' string"
            return WORKER, worker_key(self.cluster, hostname).encode()
        return f"unknown event type {etype[:80]!r}"
