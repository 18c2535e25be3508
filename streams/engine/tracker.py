"""In-memory keyed state for many tasks and workers: the engine without a streaming runtime."""

from __future__ import annotations

from typing import Any, Iterable

from .events import Invalid, TaskEvent, WorkerEvent, iter_events, parse_event
from .fold import TaskState, WorkerState, derive_task, derive_worker, fold_task, fold_worker
from .states import DEFAULT_EXPIRY_FACTOR


class Tracker:
    def __init__(self) -> None:
        self.tasks: dict[str, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.latest_timestamp: float | None = None

    def add(self, event: TaskEvent | WorkerEvent) -> bool:
        """Fold one validated event; True when it changed the state."""
        ts = event.timestamp
        latest = self.latest_timestamp
        if latest is None or ts > latest:
            self.latest_timestamp = ts
        if event.__class__ is TaskEvent:
            key = f"{event.cluster or ''}/{event.uuid}"  # task_key(), inlined on the hot path
            tasks = self.tasks
            state, changed = fold_task(tasks.get(key), event)
            tasks[key] = state
        else:
            key = event.key
            state, changed = fold_worker(self.workers.get(key), event)
            self.workers[key] = state
        return changed

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

    def task_records(self) -> Iterable[dict]:
        for key in sorted(self.tasks):
            yield derive_task(self.tasks[key])

    def worker_records(self, now: float | None = None, expiry_factor: float = DEFAULT_EXPIRY_FACTOR) -> Iterable[dict]:
        at = self.latest_timestamp if now is None else now
        for key in sorted(self.workers):
            yield derive_worker(self.workers[key], at, expiry_factor)
