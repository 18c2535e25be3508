"""The per-pack work of the streams agents (streams/folders.py), with dict tables and a list sender.

Packs are built as the bridge builds them (schemas/pack.v2.json): receive times and read_until on
the monitor's clock, events as the workers sent them.
"""

import orjson
import pytest

from streams.config import Settings
from streams.engine import iter_events
from streams.folders import Outputs, PackContext, TaskFolder, Topics, WorkerFolder

T0 = 1_800_000_000.0
SETTINGS = Settings.load(environ={})
_clock = iter(range(1, 100_000))


class Sent(list):
    def send(self, topic, value, key=None, partition=None, receipt=None, on_delivery=None):
        self.append((topic, orjson.loads(value) if value else None, key, partition))

    def on(self, topic):
        return [value for t, value, _, _ in self if t == topic]


def ev(type_, at, host="w1@h", skew=0.0, **fields):
    body = {"type": type_, "hostname": host, "pid": 1, "clock": next(_clock), "timestamp": at + skew, **fields}
    return {"seq": 1, "received_at": at, "routing_key": "x", "event": body}


def pack(*entries, read_until=None, seen=(), cluster="c1"):
    value = {"v": 2, "cluster": cluster, "bridge": "b", "read_until": read_until, "events": list(entries)}
    if seen:
        value["seen"] = list(seen)
    return list(iter_events(value))


class Table(dict):
    """A table as the folders use it (streams.outbox.OutboxTable.fetch/put)."""

    def __init__(self, sent=None):
        super().__init__()
        self.sent = sent

    def fetch(self, key):
        return self.get(key)

    def put(self, key, value, partition, receipt):
        self[key] = value


@pytest.fixture
def env():
    sent = Sent()
    outputs = Outputs(sent, Topics(SETTINGS, "app"))
    tasks, losses, workers = Table(), Table(), Table()
    return sent, TaskFolder(tasks, losses, outputs), WorkerFolder(workers, outputs, 2.0, 16.0), (tasks, workers)


def run(folded):
    folded.write()
    return folded


def test_a_task_pack_writes_each_task_once_and_publishes_its_record(env):
    sent, tasks_f, _, (tasks, _) = env
    items = pack(ev("task-received", T0, uuid="a", retries=0), ev("task-started", T0 + 1, uuid="a"),
                 ev("task-received", T0 + 1, uuid="b"), read_until=T0 + 1)  # fmt: skip
    run(tasks_f.pack(items, PackContext("t", 3, 10, None)))
    records = {r["uuid"]: r for r in sent.on(SETTINGS.topic_task_states)}
    assert (records["a"]["state"], records["b"]["state"]) == ("STARTED", "RECEIVED")
    assert set(tasks) == {"c1/a", "c1/b"} and orjson.loads(tasks["c1/a"])["p"] == 3
    sent.clear()
    run(tasks_f.pack(items, PackContext("t", 3, 10, None)))  # the same pack again: nothing new
    assert sent == []


def test_after_a_restart_a_duplicate_republishes_the_record(env):
    sent, tasks_f, _, (tasks, _) = env
    items = pack(ev("task-received", T0, uuid="a"))
    run(tasks_f.pack(items, PackContext("t", 0, 1, None)))
    fresh = TaskFolder(tasks, Table(), tasks_f.outputs)  # a new process: the table came back, the output may not have
    sent.clear()
    run(fresh.pack(items, PackContext("t", 0, 1, None)))
    assert [r["uuid"] for r in sent.on(SETTINGS.topic_task_states)] == ["a"]


def test_one_bad_event_dead_letters_alone(env):
    sent, tasks_f, _, _ = env
    items = pack(ev("task-received", T0, uuid="a"), {"seq": 2, "received_at": T0, "event": {"type": "task-started", "timestamp": T0}})
    run(tasks_f.pack(items, PackContext("t", 0, 7, None)))
    [letter] = sent.on(SETTINGS.topic_dead_letters)
    assert "uuid" in letter["reason"] and letter["source"] == {"topic": "t", "partition": 0, "offset": 7}
    assert [r["uuid"] for r in sent.on(SETTINGS.topic_task_states)] == ["a"]


def heartbeat(at, host="w1@h", skew=0.0):
    return ev("worker-heartbeat", at, host=host, skew=skew, freq=2.0, active=0, processed=0)


def test_worker_expires_only_as_the_watermark_moves(env):
    sent, _, workers_f, _ = env
    run(workers_f.pack(pack(heartbeat(T0), read_until=T0), PackContext("w", 1, 0, None)))
    # a backlog: packs whose read_until stays behind -- no judgement past it
    folded = run(workers_f.pack(pack(read_until=T0 + 1), PackContext("w", 1, 1, None)))
    assert folded.alerts == []
    folded = run(workers_f.pack(pack(read_until=T0 + 4.5), PackContext("w", 1, 2, None)))
    assert [a["alert"] for a in folded.alerts] == ["worker-lost"]
    assert folded.notices == [{"cluster": "c1", "hostname": "w1@h", "lost_at": T0 + 4.0}]
    last = sent.on(SETTINGS.topic_worker_states)[-1]
    assert (last["state"], last["offline_reason"], last["judged_at"]) == ("OFFLINE", "heartbeat-expired", T0 + 4.5)


def test_a_skewed_worker_is_not_lost_and_drift_alerts_once(env):
    _, _, workers_f, _ = env
    alerts = []
    for i in range(10):
        folded = run(workers_f.pack(pack(heartbeat(T0 + 2 * i, skew=-45.0), read_until=T0 + 2 * i + 0.1), PackContext("w", 0, i, None)))
        alerts += [a["alert"] for a in folded.alerts]
    assert alerts == ["clock-drift"]


def test_signs_of_life_from_task_events_keep_a_worker_alive(env):
    _, _, workers_f, _ = env
    run(workers_f.pack(pack(heartbeat(T0), read_until=T0), PackContext("w", 0, 0, None)))
    for i in range(1, 11):  # no heartbeat for 30 s, only the bridge's sightings
        seen = {"hostname": "w1@h", "received_at": T0 + 3 * i, "timestamp": T0 + 3 * i, "events": 3}
        folded = run(workers_f.pack(pack(seen=[seen], read_until=T0 + 3 * i + 0.2), PackContext("w", 0, i, None)))
        assert folded.alerts == []


def test_restarted_folder_does_not_alert_again_on_re_read_packs(env):
    sent, _, workers_f, (_, workers) = env
    packs = [pack(heartbeat(T0), read_until=T0), pack(read_until=T0 + 10)]
    for i, p in enumerate(packs):
        run(workers_f.pack(p, PackContext("w", 0, i, None)))
    restarted = WorkerFolder(workers, workers_f.outputs, 2.0, 16.0)
    restarted.assigned(0, workers.items())
    alerts = []
    for i, p in enumerate(packs):  # the committed offset was behind: both packs come again
        alerts += run(restarted.pack(p, PackContext("w", 0, i, None))).alerts
    assert alerts == []


def test_worker_loss_orphans_its_running_tasks_on_every_partition(env):
    sent, tasks_f, workers_f, (tasks, _) = env
    run(tasks_f.pack(pack(ev("task-received", T0, uuid="a"), ev("task-started", T0 + 0.5, uuid="a"),
                          ev("task-received", T0, uuid="b", host="w2@h")), PackContext("t", 5, 0, None)))  # fmt: skip
    run(workers_f.pack(pack(heartbeat(T0 + 0.5)), PackContext("w", 2, 0, None)))
    folded = run(workers_f.pack(pack(read_until=T0 + 9), PackContext("w", 2, 1, None)))
    [notice] = folded.notices
    orphaned = run(tasks_f.worker_lost(notice, PackContext("app-worker-losses", 5, 0, None)))
    assert [(a["alert"], a["key"]) for a in orphaned.alerts] == [("task-orphaned", "a")]
    record = sent.on(SETTINGS.topic_task_states)[-1]
    assert (record["uuid"], record["state"], record["orphaned_at"]) == ("a", "STARTED", T0 + 4.5)
    # the same notice again (re-read after a restart) raises nothing new
    assert run(tasks_f.worker_lost(notice, PackContext("app-worker-losses", 5, 0, None))).alerts == []
    # a task received from that worker before its loss but folded after it (a lagging partition)
    folded = run(tasks_f.pack(pack(ev("task-received", T0 + 1, uuid="late")), PackContext("t", 5, 1, None)))
    assert [a["alert"] for a in folded.alerts] == ["task-orphaned"]
    # the message is redelivered to another worker: no longer orphaned
    run(tasks_f.pack(pack(ev("task-received", T0 + 20, uuid="a", host="w2@h")), PackContext("t", 5, 2, None)))
    record = sent.on(SETTINGS.topic_task_states)[-1]
    assert (record["worker"], record["orphaned_at"]) == ("w2@h", None)


def test_assignment_rebuilds_the_orphan_index_and_retention_queue(env):
    _, tasks_f, _, (tasks, _) = env
    run(tasks_f.pack(pack(ev("task-received", T0, uuid="run"), ev("task-received", T0, uuid="done"),
                          ev("task-succeeded", T0 + 1, uuid="done")), PackContext("t", 4, 0, None), now=100.0))  # fmt: skip
    fresh = TaskFolder(tasks, Table(), tasks_f.outputs)
    assert fresh.assigned(4, tasks.items()) == 2 and fresh.assigned(3, tasks.items()) == 0
    assert fresh.holding[4] == {"c1/w1@h": {"c1/run"}}
    assert fresh.retire(now=T0 + 10_000, retention=60.0, partition=4) == ["c1/done"]


def test_a_re_read_pack_leaves_the_worker_as_it_was(env):
    """A pack read again (a restart or rebalance before its commit) holds only duplicates: the
    stored state is read once and kept for every item of the pack, never replaced by a new one."""
    sent, _, workers_f, (_, workers) = env
    once = pack(ev("worker-online", T0, freq=2.0), heartbeat(T0 + 1),
                seen=[{"hostname": "w1@h", "received_at": T0 + 1, "timestamp": T0 + 1, "events": 1}], read_until=T0 + 1)
    run(workers_f.pack(once, PackContext("w", 0, 0, None)))
    stored = dict(workers)
    record = sent.on(SETTINGS.topic_worker_states)[-1]
    assert record["online_at"] == T0
    run(workers_f.pack(once, PackContext("w", 0, 0, None)))
    assert dict(workers) == stored
    assert sent.on(SETTINGS.topic_worker_states)[-1]["online_at"] == T0


def test_a_finished_task_written_again_is_retired_later_not_kept(env):
    _, tasks_f, _, (tasks, _) = env
    done = pack(ev("task-received", T0, uuid="done"), ev("task-succeeded", T0 + 1, uuid="done"))
    run(tasks_f.pack(done, PackContext("t", 4, 0, None), now=T0 + 2))
    tasks_f.published.clear()  # a restart: the re-read pack is written again, later
    run(tasks_f.pack(done, PackContext("t", 4, 0, None), now=T0 + 50))
    assert tasks_f.retire(now=T0 + 70, retention=60.0, partition=4) == []  # touched at T0+50: not yet
    assert tasks_f.retire(now=T0 + 120, retention=60.0, partition=4) == ["c1/done"]


def test_index_partitions_gives_each_owned_partition_its_rows_decoded_once(env):
    from streams.folders import index_partitions

    _, tasks_f, _, (tasks, _) = env
    run(tasks_f.pack(pack(ev("task-received", T0, uuid="run")), PackContext("t", 4, 0, None)))
    run(tasks_f.pack(pack(ev("task-received", T0, uuid="done"), ev("task-succeeded", T0 + 1, uuid="done")),
                     PackContext("t", 2, 0, None)))  # fmt: skip
    fresh = TaskFolder(tasks, Table(), tasks_f.outputs)
    assert index_partitions(fresh, [2, 4, 6], tasks.items()) == 2
    assert fresh.holding[4] == {"c1/w1@h": {"c1/run"}} and fresh.holding[6] == {}
    assert [key for _, key in fresh.finished[2]] == ["c1/done"]
