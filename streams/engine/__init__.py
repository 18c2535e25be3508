"""The task/worker state engine: pure functions, no I/O (no Kafka, Faust, kombu or ClickHouse).

    event = parse_event(body, cluster)        # TaskEvent | WorkerEvent | Invalid
    state, changed = fold_task(state, event)  # order- and duplicate-independent merge
    record = derive_task(state)               # the task record users see

``Tracker`` keeps many tasks and workers in memory (replay, benchmarks, tests).
"""

from .events import Invalid, TaskEvent, WorkerEvent, iter_events, parse_event, task_key, worker_key
from .fold import derive_task, derive_worker, exception_type, fold_task, fold_worker, retirable, task_status, worker_expires_at
from .tracker import Tracker

__all__ = [
    "Invalid",
    "TaskEvent",
    "WorkerEvent",
    "Tracker",
    "derive_task",
    "derive_worker",
    "exception_type",
    "fold_task",
    "fold_worker",
    "iter_events",
    "parse_event",
    "retirable",
    "task_status",
    "task_key",
    "worker_key",
    "worker_expires_at",
]
