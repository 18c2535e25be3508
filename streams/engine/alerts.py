"""When a change deserves a human's attention (pure; the app publishes what these return).

Alerts (schemas/alert.v1.json), each raised once per transition of the state it watches:
- ``task-critical``   a task entered CRITICAL (failed after retries);
- ``task-orphaned``   a RECEIVED/STARTED task's worker was lost: nothing will finish it;
- ``failure-burst``   a task name failed at least ``threshold`` times within ``window`` seconds
                      of event time (one alert per name per window);
- ``worker-lost``     a worker went OFFLINE because nothing was received from it for
                      expiry x freq seconds (not a clean shutdown);
- ``clock-drift``     a worker's clock differs from the monitor's by more than the threshold
                      (Celery's own State only logs this: "Substantial drift ...").
- ``task-slow``       a task finished (SUCCEEDED, FAILED, ...) with a runtime of at least the
                      threshold (ALERT_SLOW_RUNTIME seconds; off by default);
- ``failure-group``   a failure group (cluster, task name, exception type, message fingerprint:
                      streams/failures.py) failed for the first time, or again after ``quiet``
                      seconds without failing.
"""

from __future__ import annotations

from collections import deque

from .states import CRITICAL, DEFAULT_DRIFT_THRESHOLD, FAILED, FINAL_STATES, OFFLINE, OFFLINE_HEARTBEAT_EXPIRED

ALERT_VERSION = 1
FAILING_STATES = frozenset({FAILED, CRITICAL})


def _alert(kind: str, cluster, key: str, at: float, **details) -> dict:
    return {"v": ALERT_VERSION, "alert": kind, "cluster": cluster, "key": key, "at": at, **details}


def said(record: dict) -> list:
    """What alerts compare against next time: ``[state, orphaned_at]`` of a published task record
    (the app keeps it in the task's state, so a restart does not alert again)."""
    return [record["state"], record.get("orphaned_at")]


def task_alerts(before: list | None, record: dict, slow_runtime: float = 0.0) -> list[dict]:
    """Alerts this change raises; ``before`` is :func:`said` of the previous record (or None);
    ``slow_runtime`` (seconds, 0 = off): a task entering a final state with a runtime at least
    this long raises ``task-slow``."""
    out = []
    status, orphaned = (before or (None, None))[:2]
    if record["state"] == CRITICAL and status != CRITICAL:
        out.append(_alert(
            "task-critical", record["cluster"], record["uuid"], record.get("failed_at") or record.get("last_seen_at"),
            name=record.get("name"), retries=record.get("retries"), runtime=record.get("runtime"),
            exception_type=record.get("exception_type"), exception=record.get("exception"),
        ))  # fmt: skip
    runtime = record.get("runtime")
    if slow_runtime > 0 and runtime is not None and runtime >= slow_runtime and record["state"] in FINAL_STATES and status not in FINAL_STATES:
        out.append(_alert(
            "task-slow", record["cluster"], record["uuid"], record.get("succeeded_at") or record.get("failed_at") or record.get("last_seen_at"),
            name=record.get("name"), state=record["state"], runtime=runtime, threshold=slow_runtime, worker=record.get("worker"),
        ))  # fmt: skip
    if record.get("orphaned_at") is not None and orphaned is None:
        out.append(_alert(
            "task-orphaned", record["cluster"], record["uuid"], record["orphaned_at"],
            name=record.get("name"), state=record["state"], worker=record.get("worker"), retries=record.get("retries"),
        ))  # fmt: skip
    return out


def newly_failed(before: str | None, record: dict) -> bool:
    """Did this change make the task count as a failure (for failure bursts)?"""
    return record["state"] in FAILING_STATES and before not in FAILING_STATES


def worker_alerts(before: dict | None, record: dict, drift_threshold: float = DEFAULT_DRIFT_THRESHOLD) -> list[dict]:
    """worker-lost when the worker went silent (the case Leek never detects); clock-drift when its
    clock left the threshold. ``before``: the worker's record before this change (or None)."""
    out = []
    key = f"{record['cluster']}/{record['hostname']}"
    lost = (OFFLINE, OFFLINE_HEARTBEAT_EXPIRED)
    if (record["state"], record.get("offline_reason")) == lost and (
        before is None or (before["state"], before.get("offline_reason")) != lost
    ):
        out.append(_alert(
            "worker-lost", record["cluster"], key, record.get("expires_at"),
            hostname=record["hostname"], last_seen_at=record.get("seen_at"), last_heartbeat_at=record.get("heartbeat_at"),
        ))  # fmt: skip
    skew = record.get("skew")
    was = before.get("skew") if before else None
    if skew is not None and abs(skew) > drift_threshold and (was is None or abs(was) <= drift_threshold):
        out.append(_alert(
            "clock-drift", record["cluster"], key, record.get("seen_at"),
            hostname=record["hostname"], skew=skew, threshold=drift_threshold,
        ))  # fmt: skip
    return out


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


class FailureGroups:
    """The newest failure time of every failure group seen, for ``failure-group`` alerts: a
    group's first failure (reason ``new``) and a failure ``quiet`` seconds or more after the
    group's previous one (reason ``returned``). Fed from the topic keyed by cluster/name, so every
    failure of a group reaches the same instance; a failure older than the newest one kept
    raises nothing. Kept in memory: after a worker restart each group's next failure is ``new``
    again (once)."""

    def __init__(self, quiet: float):
        self.quiet = quiet
        self.last: dict[tuple, float] = {}

    def add(self, cluster, name: str, exception_type: str, fingerprint: str, at: float, uuid: str, exception: str | None = None) -> dict | None:
        group = (cluster, name, exception_type, fingerprint)
        last = self.last.get(group)
        if last is not None and at <= last:
            return None
        self.last[group] = at
        if last is not None and at - last < self.quiet:
            return None
        details = {"reason": "new"} if last is None else {"reason": "returned", "quiet_seconds": at - last}
        return _alert(
            "failure-group", cluster, f"{cluster}/{name}/{exception_type}/{fingerprint}", at,
            name=name, exception_type=exception_type or None, exception=exception, fingerprint=fingerprint, last_uuid=uuid, **details,
        )  # fmt: skip
