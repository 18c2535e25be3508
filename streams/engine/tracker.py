"""In-memory keyed state for many tasks and workers: the engine without a streaming runtime."""

from __future__ import annotations

from typing import Any, Iterable

from .events import Invalid, OtherEvent, Sighting, TaskEvent, Tick, WorkerEvent, iter_events, parse_event, worker_key
from .fold import (
    TaskState,
    WorkerState,
    _when,
    derive_task,
    derive_worker,
    fold_sighting,
    fold_task,
    fold_worker,
    judge_worker,
    mark_worker_lost,
    task_status,
)
from .states import DEFAULT_EXPIRY_FACTOR, ORPHANABLE_STATES, SENT


class Tracker:
    """Every task and worker of the input, folded as the streams app folds them.

    Liveness is judged on the monitor's clock: the watermark of a cluster is the newest receive
    time (or pack ``read_until``) read so far for it; inputs without receive times fall back on
    event timestamps. Any task event but task-sent is a sign of life of its worker.
    """

    JUDGE_EVERY = 1.0  # seconds of watermark between two liveness judgements (as the app's ticks)

    def __init__(self, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> None:
        self.tasks: dict[str, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.watermarks: dict[str | None, float] = {}
        self.judged: dict[str | None, float] = {}
        self.expiry_factor = expiry_factor
        self.others: dict[str, int] = {}  # well-formed events no rule reads, by type

    def _advance(self, cluster, at: float) -> None:
        if at > self.watermarks.get(cluster, float("-inf")):
            self.watermarks[cluster] = at
            if at - self.judged.get(cluster, float("-inf")) >= self.JUDGE_EVERY:
                self.judged[cluster] = at
                self.judge(at, self.expiry_factor, cluster)

    def _sighting(self, s: Sighting) -> None:
        key = worker_key(s.cluster, s.hostname)
        self.workers[key], _ = fold_sighting(self.workers.get(key), s)

    def add(self, event: TaskEvent | WorkerEvent | OtherEvent | Sighting | Tick) -> bool:
        """Fold one validated item; True when it changed the state."""
        cls = event.__class__
        if cls is TaskEvent:
            self._advance(event.cluster, _when(event.received, event.timestamp))
            key = f"{event.cluster or ''}/{event.uuid}"  # task_key(), inlined on the hot path
            tasks = self.tasks
            state, changed = fold_task(tasks.get(key), event)
            tasks[key] = state
            if changed and event.kind != SENT and event.hostname:  # a sign of life of its worker
                wkey = f"{event.cluster or ''}/{event.hostname}"
                worker = self.workers.get(wkey)
                received = _when(event.received, event.timestamp)
                marks = worker.get("task_seen") if worker is not None else None
                if marks is not None and marks[0][0] == event.pid and worker["seen"] is not None:
                    # the common case, fold_sighting inlined: the same process as its newest task events
                    if received > worker["seen"]:
                        worker["seen"] = received
                    if worker["alive"] is None or event.timestamp > worker["alive"]:
                        worker["alive"] = event.timestamp
                    if received > marks[0][1]:
                        marks[0][1] = received
                else:
                    self.workers[wkey], _ = fold_sighting(worker, Sighting(event.cluster, event.hostname, received, event.timestamp, 1, event.pid))
            return changed
        if cls is WorkerEvent:
            self._advance(event.cluster, _when(event.received, event.timestamp))
            key = event.key
            state, changed = fold_worker(self.workers.get(key), event)
            self.workers[key] = state
            return changed
        if cls is Sighting:
            self._advance(event.cluster, event.received)
            self._sighting(event)
            return True
        if cls is Tick:
            self._advance(event.cluster, event.read_until)
            return False
        self.others[event.type] = self.others.get(event.type, 0) + 1  # OtherEvent
        return False

    def feed(self, value: Any, cluster: str | None = None) -> list[Invalid]:
        """Fold every event in one decoded JSON value; returns what was invalid."""
        invalid = []
        if value.__class__ is dict and "type" in value:  # the common case: one event object
            event = parse_event(value, cluster)
            if event.__class__ is Invalid:
                return [event]
            self.add(event)
            return invalid
        for event in iter_events(value, cluster):
            if event.__class__ is Invalid:
                invalid.append(event)
            else:
                self.add(event)
        return invalid

    def judge(self, at: float | None = None, expiry_factor: float | None = None, cluster: Any = ...) -> list[str]:
        """Judge the liveness of every worker (of ``cluster`` only, when given) at ``at`` (default:
        its cluster's watermark) and mark the RECEIVED/STARTED tasks of the workers found gone as
        orphaned. Returns the keys of the workers newly found gone."""
        expiry_factor = self.expiry_factor if expiry_factor is None else expiry_factor
        lost = {}
        for key, state in self.workers.items():
            if cluster is not ... and state["cluster"] != cluster:
                continue
            when = self.watermarks.get(state["cluster"]) if at is None else at
            if when is not None and judge_worker(state, when, expiry_factor):
                lost[(state["cluster"], state["hostname"])] = derive_worker(state, when, expiry_factor)["expires_at"]
        if lost:
            for state in self.tasks.values():
                record = None
                for (cluster, hostname), lost_at in lost.items():
                    if state["cluster"] != cluster:
                        continue
                    if record is None:
                        if task_status(state) not in ORPHANABLE_STATES:
                            break
                        record = derive_task(state)
                    if record["worker"] == hostname:
                        mark_worker_lost(state, hostname, lost_at)
        return [f"{c or ''}/{h}" for c, h in lost]

    def task_records(self) -> Iterable[dict]:
        for key in sorted(self.tasks):
            yield derive_task(self.tasks[key])

    def worker_records(self, now: float | None = None, expiry_factor: float | None = None) -> Iterable[dict]:
        expiry_factor = self.expiry_factor if expiry_factor is None else expiry_factor
        self.judge(now, expiry_factor)
        for key in sorted(self.workers):
            state = self.workers[key]
            at = self.watermarks.get(state["cluster"]) if now is None else now
            yield derive_worker(state, at, expiry_factor)
