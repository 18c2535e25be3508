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


# -- from a hostile review: past TASK_ENTRIES_MAX entries, order, duplicates, skew, many types --
_T0 = 1_800_000_000.0


def _long_task(attempts: int, host: str = "w1@h", pid: int = 100, skew: float = 0.0) -> list[dict]:
    out = [{"type": "task-sent", "uuid": "u", "name": "t.poll", "args": "()", "kwargs": "{}", "retries": 0, "hostname": "client",
            "pid": 1, "clock": 1, "timestamp": _T0, "local_received": _T0 + 0.01}]  # fmt: skip
    t, clock = _T0, 10
    for i in range(attempts):
        for kind in ("task-received", "task-started", "task-retried" if i < attempts - 1 else "task-succeeded"):
            t += 0.1
            clock += 1
            e = {"type": kind, "uuid": "u", "hostname": host, "pid": pid, "clock": clock, "timestamp": t + skew, "local_received": t + 0.01}
            if kind == "task-received":
                e.update(name="t.poll", args="()", kwargs="{}", retries=i)
            elif kind == "task-retried":
                e.update(exception="Retry('x')", traceback="tb")
            elif kind == "task-succeeded":
                e.update(result="'ok'", runtime=0.1)
            out.append(e)
    return out


def _record(events: list[dict]) -> dict:
    from streams.engine import Tracker

    tracker = Tracker()
    for e in events:
        tracker.feed(dict(e))
    (record,) = tracker.task_records()
    return record


def test_past_the_bound_every_field_but_the_count_is_order_independent():
    import random

    events = _long_task(200)  # 601 events: summarised past 512
    base = _record(events)
    assert (base["state"], base["retries"], base["events_count"], base["client"]) == ("RECOVERED", 199, 601, "client")
    rnd = random.Random(7)
    orders = [list(reversed(events)), events[1:] + events[:1], events[5:] + events[:5]]
    for _ in range(4):
        shuffled = events[:]
        rnd.shuffle(shuffled)
        orders.append(shuffled + rnd.sample(events, 100))
    for order in orders:
        record = _record(order)
        differ = {k: (base[k], record[k]) for k in base if base[k] != record[k] and k != "events_count"}
        assert differ == {}
        assert 513 <= record["events_count"] <= 601  # late events older than the summary count as its duplicates


def test_redelivered_copies_received_later_change_nothing_past_the_bound():
    events = _long_task(200)
    again = [{**e, "local_received": e["local_received"] + 1000} for e in events[:60]]  # a bridge re-reading the broker
    assert _record(events + again) == _record(events)


def test_a_late_success_from_a_host_whose_clock_is_behind_is_never_taken_for_a_duplicate():
    early = _long_task(199)[:-1]  # 199 attempts, the last one's end missing
    late = [e for e in _long_task(1, host="w2@h", pid=200, skew=-3600.0) if e["type"] != "task-sent"]
    for order in (early + late, late + early):
        record = _record(order)
        assert (record["state"], record["result"], record["worker"]) == ("RECOVERED", "'ok'", "w2@h")


def test_many_unknown_event_types_neither_crash_nor_grow_without_bound():
    from streams.engine import parse_event
    from streams.engine.fold import fold_task

    state = None
    for i in range(2000):
        body = {"type": f"task-step-{i % 1000}", "uuid": "u", "hostname": "w@h", "pid": 1, "clock": i, "timestamp": _T0 + i}
        state, _ = fold_task(state, parse_event(body, "c1"))
    state, changed = fold_task(state, parse_event({"type": "task-succeeded", "uuid": "u", "hostname": "w@h", "pid": 1, "clock": 5000,
                                                   "timestamp": _T0 + 5000, "result": "1", "runtime": 1.0}, "c1"))  # fmt: skip
    assert changed and len(state["ev"]) <= 512
