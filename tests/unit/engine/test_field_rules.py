"""Field rules by the attempt that ran (issue 19, item 6): a success without result/runtime never
hides one that has them; name/args/kwargs follow the delivery that ran last (Task.replace reuses
the id); a task-started joins a delivery of its own pid (a worker restarted under its name)."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.engine import Tracker, task_deliveries

T0 = 1_800_000_000.0


def _e(etype, at, host="w1@h", pid=100, clock=None, **fields):
    body = {"type": etype, "uuid": "u", "hostname": host, "pid": pid, "clock": clock if clock is not None else int(at * 10) % 100000,
            "timestamp": at, **fields}  # fmt: skip
    return {"routing_key": "x", "recv_time": at + 0.05, "body": body}


def _record(events):
    t = Tracker()
    for e in events:
        t.feed(e)
    (record,) = t.task_records()
    return record, t


def _orders(events, rnd, dups):
    out = events + [rnd.choice(events) for _ in range(dups)]
    rnd.shuffle(out)
    return out


DEDUP = [
    _e("task-received", T0, name="t.pay", args="(1,)", kwargs="{}", retries=0),
    _e("task-started", T0 + 0.1),
    _e("task-succeeded", T0 + 1.5, result="'paid'", runtime=1.4),
    # worker_deduplicate_successful_tasks: the message comes back (acks_late, a lost connection)
    _e("task-received", T0 + 30, host="w2@h", pid=200, name="t.pay", args="(1,)", kwargs="{}", retries=0),
    _e("task-started", T0 + 30.1, host="w2@h", pid=200),
    _e("task-succeeded", T0 + 30.2, host="w2@h", pid=200, result=None, runtime=None),
]


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_a_deduplicated_success_never_blanks_the_result(rnd, dups):
    record, _ = _record(_orders(DEDUP, rnd, dups))
    assert (record["state"], record["result"], record["runtime"]) == ("SUCCEEDED", "'paid'", 1.4)


def test_success_read_back_after_a_lost_worker_keeps_its_result():
    # success_stored_before_lost: result read back from the backend, runtime null -- still shown
    events = DEDUP[:2] + [_e("task-succeeded", T0 + 5, result="'paid'", runtime=None)]
    record, _ = _record(events)
    assert (record["result"], record["runtime"]) == ("'paid'", None)


REPLACE = [
    _e("task-sent", T0 - 1, host="gen1@client", pid=1, name="t.poll", args="(1,)", kwargs="{}", retries=0, queue="q1"),
    _e("task-received", T0, name="t.poll", args="(1,)", kwargs="{}", retries=0),
    _e("task-started", T0 + 0.1),
    _e("task-sent", T0 + 0.2, host="gen101@h", pid=101, name="t.poll", args="(1,)", kwargs="{}", retries=1, queue="q1"),
    _e("task-retried", T0 + 0.3, exception="Retry()"),
    _e("task-received", T0 + 1, name="t.poll", args="(1,)", kwargs="{}", retries=1),
    _e("task-started", T0 + 1.1),
    # self.replace(t.finish.s(7)): the replacement is sent with the same id, retries back at 0
    _e("task-sent", T0 + 1.2, host="gen101@h", pid=101, name="t.finish", args="(7,)", kwargs="{'k': 1}", retries=0, queue="q2"),
    _e("task-received", T0 + 2, host="w2@h", pid=200, name="t.finish", args="(7,)", kwargs="{'k': 1}", retries=0),
    _e("task-started", T0 + 2.1, host="w2@h", pid=200),
    _e("task-succeeded", T0 + 2.5, host="w2@h", pid=200, result="'finished'", runtime=0.4),
]


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_task_replace_shows_the_replacement_that_ran(rnd, dups):
    record, _ = _record(_orders(REPLACE, rnd, dups))
    assert (record["name"], record["args"], record["kwargs"], record["queue"]) == ("t.finish", "(7,)", "{'k': 1}", "q2")
    assert (record["result"], record["worker"], record["state"], record["retries"]) == ("'finished'", "w2@h", "RECOVERED", 1)


RESTART = [
    # the first process (pid 100) had the message prefetched, not started, and was SIGKILLed
    _e("task-received", T0, name="t.x", args="()", kwargs="{}", retries=0),
    # the same hostname restarted (pid 300): the message is redelivered to it
    _e("task-received", T0 + 20, pid=300, name="t.x", args="()", kwargs="{}", retries=0),
    _e("task-started", T0 + 20.5, pid=300),
    _e("task-succeeded", T0 + 21, pid=300, result="1", runtime=0.5),
]


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_a_restarted_worker_starts_its_own_delivery(rnd, dups):
    record, t = _record(_orders(RESTART, rnd, dups))
    assert (record["state"], record["received_at"], record["started_at"]) == ("SUCCEEDED", T0 + 20, T0 + 20.5)
    deliveries = task_deliveries(next(iter(t.tasks.values())))
    assert [(d["received_at"], d["started_at"]) for d in deliveries] == [(T0, None), (T0 + 20, T0 + 20.5)]
