"""The task/worker state engine: pure functions, no I/O (no Kafka, Faust, kombu or ClickHouse).

    event = parse_event(body, cluster, received)  # TaskEvent | WorkerEvent | OtherEvent | Invalid
    state, changed = fold_task(state, event)      # order- and duplicate-independent merge
    record = derive_task(state)                   # the task record users see
    judge_worker(state, watermark)                # liveness on the monitor's clock

``Tracker`` keeps many tasks and workers in memory (replay, benchmarks, tests).
"""

from .events import (
    Invalid,
    OtherEvent,
    Sighting,
    TaskEvent,
    Tick,
    WorkerEvent,
    iter_events,
    iter_pack,
    parse_event,
    task_key,
    worker_key,
)
from .fold import (
    derive_task,
    derive_worker,
    exception_type,
    fold_sighting,
    fold_task,
    fold_worker,
    judge_worker,
    mark_worker_lost,
    retirable,
    task_deliveries,
    task_seen_at,
    task_status,
    worker_expires_at,
)
from .tracker import Tracker

__all__ = [
    "Invalid",
    "OtherEvent",
    "Sighting",
    "TaskEvent",
    "Tick",
    "WorkerEvent",
    "Tracker",
    "derive_task",
    "derive_worker",
    "exception_type",
    "fold_sighting",
    "fold_task",
    "fold_worker",
    "iter_events",
    "iter_pack",
    "judge_worker",
    "mark_worker_lost",
    "parse_event",
    "retirable",
    "task_deliveries",
    "task_key",
    "task_seen_at",
    "task_status",
    "worker_expires_at",
    "worker_key",
]
