"""When a change deserves a human's attention (pure; the app publishes what these return).

Three alerts (schemas/alert.v1.json):
- ``task-critical``   a task entered CRITICAL (failed after retries);
- ``failure-burst``   a task name failed at least ``threshold`` times within ``window`` seconds
                      of event time (one alert per name per window);
- ``worker-lost``     a worker went OFFLINE because its heartbeats stopped (not a clean shutdown).
"""

from __future__ import annotations

from collections import deque

from .states import CRITICAL, FAILED, OFFLINE, OFFLINE_HEARTBEAT_EXPIRED

ALERT_VERSION = 1
FAILING_STATES = frozenset({FAILED, CRITICAL})


def _alert(kind: str, cluster, key: str, at: float, **details) -> dict:
    return {"v": ALERT_VERSION, "alert": kind, "cluster": cluster, "key": key, "at": at, **details}


def task_alert(before: str | None, record: dict) -> dict | None:
    """A task-critical alert when this change moved the task into CRITICAL."""
    if record["state"] == CRITICAL and before != CRITICAL:
        return _alert(
            "task-critical", record["cluster"], record["uuid"], record.get("failed_at") or record.get("last_seen_at"),
            name=record.get("name"), retries=record.get("retries"),
            exception_type=record.get("exception_type"), exception=record.get("exception"),
        )
    return None


def newly_failed(before: str | None, record: dict) -> bool:
    """Did this change make the task count as a failure (for failure bursts)?"""
    return record["state"] in FAILING_STATES and before not in FAILING_STATES


def worker_alert(before: tuple | None, record: dict) -> dict | None:
    """A worker-lost alert when a worker's heartbeats stopped (the case Leek never detects)."""
    now = (record["state"], record.get("offline_reason"))
    if now == (OFFLINE, OFFLINE_HEARTBEAT_EXPIRED) and before != now:
        return _alert(
            "worker-lost", record["cluster"], f"{record['cluster']}/{record['hostname']}",
            record.get("offline_at") or record.get("expires_at"),
            hostname=record["hostname"], last_heartbeat_at=record.get("heartbeat_at"),
        )
    return None


class FailureBursts:
    """Failures per (cluster, task name) in a sliding window of event time.

    Fed from a topic keyed by cluster/name, so every failure of a name reaches the same
    instance. Failure timestamps may arrive out of order; each name keeps at most
    ``threshold`` of the latest ones, so memory is bounded by names x threshold.
    """

    def __init__(self, window: float, threshold: int):
        self.window = window
        self.threshold = threshold
        self.recent: dict[str, deque] = {}
        self.alerted_until: dict[str, float] = {}

    def add(self, cluster, name: str, at: float, uuid: str) -> dict | None:
        key = f"{cluster}/{name}"
        times = self.recent.get(key)
        if times is None:
            times = self.recent[key] = deque(maxlen=self.threshold)
        if len(times) == times.maxlen and at <= times[0]:
            return None  # older than every failure kept: cannot complete a newer burst
        times.append(at)
        if len(times) > 1 and at < times[-2]:
            ordered = sorted(times)
            times.clear()
            times.extend(ordered)
        if len(times) < self.threshold or times[-1] - times[0] > self.window:
            return None
        if times[-1] <= self.alerted_until.get(key, float("-inf")):
            return None  # this burst was announced already
        self.alerted_until[key] = times[0] + self.window
        return _alert(
            "failure-burst", cluster, key, times[-1],
            name=name, failures=len(times), window_seconds=self.window, since=times[0], last_uuid=uuid,
        )
