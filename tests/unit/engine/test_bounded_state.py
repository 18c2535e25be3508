"""Bounded state per task (issue 19, item 3): a task retried 10,000 times (celery.chord_unlock
with max_retries=None retries every second) keeps a state of bounded size, its record exact
(RECOVERED with the right retries and counts), its cost linear in its events."""

import time

import orjson
import pytest

from streams.engine import Tracker, derive_task, iter_events
from streams.engine.codec import dumps
from streams.engine.states import TASK_ENTRIES_MAX
from tests.unit.test_folders import SETTINGS, Outputs, PackContext, Sent, Table, TaskFolder, Topics

T0 = 1_800_000_000.0
HOST = "w1@h"


def unlock_events(attempts: int, uuid: str = "unlock", t0: float = T0) -> list[dict]:
    """What a worker sends for a task retried ``attempts`` times, then succeeding (as captured in
    tests/fixtures/celery-emit-paths/retry.jsonl: received r=n+1 before retried(n))."""
    out, clock = [], 0
    for n in range(attempts + 1):
        at = t0 + n
        clock += 5
        out.append({"type": "task-received", "uuid": uuid, "name": "celery.chord_unlock", "args": "('g',)", "kwargs": "{}",
                    "retries": n, "hostname": HOST, "pid": 10, "clock": clock, "timestamp": at, "local_received": at + 0.01})  # fmt: skip
        out.append({"type": "task-started", "uuid": uuid, "hostname": HOST, "pid": 10, "clock": clock + 1,
                    "timestamp": at + 0.1, "local_received": at + 0.11})  # fmt: skip
        if n < attempts:
            out.append({"type": "task-sent", "uuid": uuid, "name": "celery.chord_unlock", "retries": n + 1, "hostname": "gen11@h",
                        "pid": 11, "clock": clock + 2, "timestamp": at + 0.2, "local_received": at + 0.21})  # fmt: skip
            out.append({"type": "task-retried", "uuid": uuid, "exception": "Retry('chord not ready')", "hostname": HOST,
                        "pid": 10, "clock": clock + 3, "timestamp": at + 0.3, "local_received": at + 0.31})  # fmt: skip
        else:
            out.append({"type": "task-succeeded", "uuid": uuid, "result": "None", "runtime": 0.01, "hostname": HOST,
                        "pid": 10, "clock": clock + 2, "timestamp": at + 0.2, "local_received": at + 0.21})  # fmt: skip
    return out


def _ordinary(uuid: str, at: float) -> list[dict]:
    base = {"uuid": uuid, "hostname": HOST, "pid": 10}
    return [{**base, "type": "task-received", "name": "t.add", "retries": 0, "clock": 1, "timestamp": at, "local_received": at},
            {**base, "type": "task-started", "clock": 2, "timestamp": at + 0.1, "local_received": at + 0.1},
            {**base, "type": "task-succeeded", "result": "3", "runtime": 0.1, "clock": 3, "timestamp": at + 0.2, "local_received": at + 0.2}]  # fmt: skip


def test_10000_attempts_through_the_engine_bounded_and_exact():
    events = unlock_events(10_000)
    t = Tracker()
    began = time.perf_counter()
    largest = 0
    for i, e in enumerate(events):
        t.feed(e)
        if i % 1000 == 0:
            largest = max(largest, len(dumps(t.tasks["/unlock"])))
    elapsed = time.perf_counter() - began
    state = t.tasks["/unlock"]
    size = len(dumps(state))
    record = derive_task(state)
    assert (record["state"], record["retries"], record["events_count"]) == ("RECOVERED", 10_000, 40_003)
    assert (record["name"], record["worker"], record["received_at"], record["started_at"]) == ("celery.chord_unlock", HOST, T0 + 10_000, T0 + 10_000.1)
    assert record["first_seen_at"] == T0 and record["last_seen_at"] == T0 + 10_000.2
    assert len(state["ev"]) <= TASK_ENTRIES_MAX and max(size, largest) < 64 * 1024, size
    print(f"\n10,000 attempts, 40,003 events: {elapsed:.2f} s through the Tracker, state {size:,} bytes (largest {largest:,})")
    # duplicates of summarised events change nothing
    for e in events[:4000:7]:
        t.feed(e)
    assert derive_task(t.tasks["/unlock"]) == record


def test_the_state_stops_growing():
    largest = {}  # the largest state seen along the way (sampled): a saw-tooth between KEEP and MAX entries
    for attempts in (200, 2_000, 10_000):
        t = Tracker()
        for i, e in enumerate(unlock_events(attempts)):
            t.feed(e)
            if i % 37 == 0:
                largest[attempts] = max(largest.get(attempts, 0), len(dumps(t.tasks["/unlock"])))
        assert derive_task(t.tasks["/unlock"])["retries"] == attempts
    assert largest[10_000] <= largest[2_000] * 1.05, largest


def test_10000_attempts_through_the_streams_folder_next_to_ordinary_tasks():
    """As the streams agent folds packs: each pack's table value stays far below Kafka's 1 MB."""
    sent = Sent()
    tasks = Table()
    folder = TaskFolder(tasks, Table(), Outputs(sent, Topics(SETTINGS, "app")))
    events = unlock_events(10_000)
    ordinary = [e for i in range(300) for e in _ordinary(f"ord-{i}", T0 + i * 30)]
    stream = sorted(events + ordinary, key=lambda e: e["local_received"])
    largest = 0
    for start in range(0, len(stream), 50):  # packs of 50 events, as a bridge flush gives
        chunk = stream[start : start + 50]
        value = {"v": 2, "cluster": "c1", "bridge": "b", "read_until": chunk[-1]["local_received"],
                 "events": [{"seq": 1, "received_at": e["local_received"], "event": e} for e in chunk]}  # fmt: skip
        folder.pack(list(iter_events(value)), PackContext("t", 0, start, None)).write()
        largest = max(largest, len(tasks["c1/unlock"]))
    final = {r["uuid"]: r for r in sent.on(SETTINGS.topic_task_states)}
    assert (final["unlock"]["state"], final["unlock"]["retries"], final["unlock"]["events_count"]) == ("RECOVERED", 10_000, 40_003)
    assert sum(1 for u, r in final.items() if u.startswith("ord-") and r["state"] == "SUCCEEDED") == 300
    assert largest < 64 * 1024
    assert max(len(orjson.dumps(r)) for _, r, _, _ in sent if r) < 64 * 1024
