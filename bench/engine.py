"""`make bench-engine`: our engine vs celery.events.state.State on the same recorded events.

Replays the shared load fixture (80,216 real events) repeated until >= MIN_EVENTS, with task
uuids rewritten per copy so every copy is new tasks, through
  * ours:   parse_event + fold_task/fold_worker per event, derive_task for every task at the end
            (records are what users see, so deriving them is part of the cost);
  * Celery: State.event(event) per event (the in-memory core of Flower).
Both run in this process, one after the other, on identical pre-built inputs.  Prints rates,
their ratio and the memory per tracked task (tracemalloc), and writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import gzip
import itertools
import json
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Iterator

import orjson

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "celery-events-redis" / "load-20k-events.jsonl.gz"
MIN_EVENTS = 200_000


@functools.lru_cache(maxsize=1)
def _recording() -> tuple[dict, ...]:
    with gzip.open(FIXTURE) as f:
        return tuple(orjson.loads(line) for line in f if line.strip())


def recorded_copies() -> Iterator[dict]:
    """The recorded events, copy after copy for ever; each copy's tasks have their own uuids."""
    for copy_no in itertools.count():
        suffix = f"{copy_no:06x}"
        for e in _recording():
            e = dict(e)
            if "uuid" in e:
                e["uuid"] = e["uuid"][:-6] + suffix
            yield e


def load_events(min_events: int) -> list[dict]:
    """Whole copies of the recording, at least ``min_events`` events."""
    per_copy = len(_recording())
    return list(itertools.islice(recorded_copies(), -(-min_events // per_copy) * per_copy))


def run_ours(events: list[dict]) -> dict:
    from streams.engine import Tracker

    tracker = Tracker()
    gc.collect()
    t0 = time.perf_counter()
    for e in events:
        tracker.feed(e)
    folded = time.perf_counter()
    records = sum(1 for _ in tracker.task_records())
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "fold_seconds": folded - t0, "tasks": records, "state": tracker}


def run_celery(events: list[dict]) -> dict:
    from celery.events.state import State

    state = State(max_tasks_in_memory=10**8, max_workers_in_memory=10**6)
    gc.collect()
    t0 = time.perf_counter()
    for e in events:
        state.event(e)
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "tasks": len(state.tasks), "state": state}


def memory_per_task(runner, events: list[dict]) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = runner(events)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    size = after - before
    del result
    return size / max(1, runner_tasks(events))


def runner_tasks(events: list[dict]) -> int:
    return len({e["uuid"] for e in events if "uuid" in e})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=MIN_EVENTS)
    parser.add_argument("--rounds", type=int, default=3, help="best of N (rates)")
    args = parser.parse_args(argv)
    events = load_events(args.events)
    n = len(events)
    print(f"bench-engine: {n:,} events ({runner_tasks(events):,} tasks), best of {args.rounds} rounds, {platform.python_version()}")

    best = {"ours": None, "celery": None}
    for _ in range(args.rounds):
        for name, runner in (("ours", run_ours), ("celery", run_celery)):
            inputs = copy.deepcopy(events) if name == "celery" else events  # State may keep references
            result = runner(inputs)
            rate = n / result["seconds"]
            if best[name] is None or rate > best[name]["rate"]:
                best[name] = {"rate": rate, "seconds": result["seconds"], "tasks": result["tasks"]}
                if name == "ours":
                    best[name]["fold_rate"] = n / result["fold_seconds"]
            del result, inputs
            gc.collect()
    for name, runner in (("ours", run_ours), ("celery", run_celery)):
        best[name]["bytes_per_task"] = memory_per_task(runner, copy.deepcopy(events) if name == "celery" else events)

    ratio = best["ours"]["rate"] / best["celery"]["rate"]
    print(f"  ours   : {best['ours']['rate']:>10,.0f} events/s (fold only {best['ours']['fold_rate']:,.0f}/s, "
          f"incl. deriving {best['ours']['tasks']:,} records)  {best['ours']['bytes_per_task']:,.0f} B/task")
    print(f"  celery : {best['celery']['rate']:>10,.0f} events/s (State.event)  {best['celery']['bytes_per_task']:,.0f} B/task")
    print(f"  ratio  : {ratio:.2f}x Celery's State (goal >= 2.4x)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine.json").write_text(json.dumps({"events": n, "ratio": ratio, **best}, indent=2))


if __name__ == "__main__":
    main()
