"""The audit trail of task control: rows (schemas/audit.v1.json) to Kafka, and to ClickHouse by the sink.

A real run writes its request row (phase ``requested``) and waits for Kafka's acknowledgement
before it touches any task: if the audit cannot be written, nothing is done (:class:`AuditUnavailable`).
Then every row -- the request's and one per selected task -- as phase ``done``. A control service
killed between the two leaves the request ``requested``: visible, with no outcome claimed.
"""

from __future__ import annotations

import datetime as dt
import json

import orjson

AUDIT_COLUMNS = (
    "request_id", "cluster", "uuid", "at", "at_date", "finished_at", "user", "role", "via", "action", "dry_run", "selection",
    "phase", "name", "state", "eligible", "reason", "outcome", "detail", "new_uuid", "selected", "eligible_count",
    "done_count", "control", "version",
)  # fmt: skip
PHASE_VERSION = {"requested": 0, "done": 1}
TEXT_MAX = 2000  # characters of reason/detail kept (a broker's error text can be long)


class AuditUnavailable(RuntimeError):
    """Kafka did not acknowledge the audit row: the request is refused, nothing was done."""


def row(request: dict, phase: str, *, task: dict | None = None, finished_at: float | None = None, counts: dict | None = None) -> dict:
    """One audit record. ``request``: request_id, at, user, role, action, dry_run, selection
    (dict), cluster, control; ``task``: uuid, cluster, name, state, eligible, reason, outcome,
    detail, new_uuid (None for the request row)."""
    task = task or {}
    counts = counts or {}
    return {
        "v": 1, "kind": "audit", "request_id": request["request_id"],
        "cluster": task.get("cluster", request.get("cluster", "")) or "", "uuid": task.get("uuid", ""),
        "at": request["at"], "finished_at": finished_at, "user": request["user"], "role": request["role"],
        "via": request.get("via", ""), "action": request["action"], "dry_run": bool(request["dry_run"]),
        # the selection on the request row only: a task row repeating it would multiply it by the selection's size
        "selection": "" if task else json.dumps(request["selection"], sort_keys=True, ensure_ascii=False), "phase": phase,
        "name": task.get("name") or "", "state": task.get("state") or "", "eligible": bool(task.get("eligible")),
        "reason": (task.get("reason") or "")[:TEXT_MAX], "outcome": task.get("outcome") or "",
        "detail": (task.get("detail") or "")[:TEXT_MAX], "new_uuid": task.get("new_uuid") or "",
        "selected": int(counts.get("selected", 0)), "eligible_count": int(counts.get("eligible", 0)),
        "done_count": int(counts.get("done", 0)), "control": request.get("control", ""), "version": PHASE_VERSION[phase],
    }  # fmt: skip


def audit_row(record: dict) -> tuple:
    """An audit record -> a row of ClickHouse's audit table (AUDIT_COLUMNS)."""
    at = float(record["at"])
    values = {**record, "at_date": dt.date(1970, 1, 1) + dt.timedelta(days=int(at // 86400)),
              "dry_run": 1 if record["dry_run"] else 0, "eligible": 1 if record.get("eligible") else 0}  # fmt: skip
    return tuple(values.get(column, "") if column not in ("finished_at",) else values.get(column) for column in AUDIT_COLUMNS)


class AuditLog:
    """Writes audit records to the audit topic with one librdkafka producer (acks=all,
    idempotent) and waits for every acknowledgement."""

    def __init__(self, settings, producer=None):
        self.topic = settings.topic_audit
        if producer is None:
            from confluent_kafka import Producer

            from streams.connections import librdkafka_options

            producer = Producer({**librdkafka_options(settings), "client.id": "celery-monitor-control", "acks": "all",
                                 "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 15_000})  # fmt: skip
        self.producer = producer

    def write(self, records: list[dict], timeout: float = 20.0) -> None:
        """Raises AuditUnavailable unless Kafka acknowledged every record."""
        failures: list[str] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(str(err))

        from confluent_kafka import KafkaException

        pending = 0
        for record in records:
            while True:
                try:
                    self.producer.produce(self.topic, orjson.dumps(record), key=record["request_id"].encode(), on_delivery=delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
                except KafkaException as exc:  # refused locally (e.g. over message.max.bytes): the audit is not written
                    raise AuditUnavailable(f"Kafka refused an audit record on {self.topic}: {exc}") from None
            pending += 1
        left = self.producer.flush(timeout)
        if left or failures:
            raise AuditUnavailable(f"Kafka did not acknowledge {left or len(failures)} of {pending} audit record(s) on "
                                   f"{self.topic}: {failures[:1] or 'timeout'}")  # fmt: skip
