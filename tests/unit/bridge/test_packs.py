"""Packing a flush: partitions as Kafka's default partitioner, size bounds, signs of life, ticks,
read_until rules, and packing again when Kafka refuses a pack."""

import json
import uuid as uuidlib

import orjson
import pytest
from jsonschema import Draft202012Validator
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from bridge.envelope import DEAD, TASK, WORKER, Entry, Enveloper
from bridge.packs import Packer, murmur2, partition_of
from bridge.progress import Progress
from streams.packs import decode_pack
from tests.unit.test_schemas import SCHEMAS

PARTS = {TASK: 8, WORKER: 8}
pack_schema = Draft202012Validator(json.loads((SCHEMAS / "pack.v2.json").read_text()))


def entries_of(bodies, cluster="c", received_at=10.0):
    env = Enveloper(cluster, "b")
    out = []
    for routing_key, body in bodies:
        out += [e for e in env.wrap(orjson.dumps(body), routing_key, received_at) if isinstance(e, Entry)]
    return out


def task(uuid, type_="task-started", host="w1@h", ts=100.0, **fields):
    return {"type": type_, "uuid": uuid, "hostname": host, "timestamp": ts, "clock": 1, "pid": 1, **fields}


def kafka_python_partition(key: bytes, partitions: int) -> int:
    return (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions  # kafka.partitioner.default.DefaultPartitioner


def test_murmur2_and_partitions_match_kafka_python():
    keys = [str(uuidlib.uuid4()).encode() for _ in range(2000)] + [f"prod/celery@w{i}".encode() for i in range(200)]
    keys += [b"", b"a", b"ab", b"abc", "üñî".encode(), bytes(range(256))]
    for key in keys:
        assert murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF, key
        for n in (1, 3, 8, 16):
            assert partition_of(key, n) == kafka_python_partition(key, n)
    packer = Packer("c", "b")
    assert all(packer.partition(k, 8) == kafka_python_partition(k, 8) for k in keys * 2)  # the cache agrees


def test_every_event_of_a_pack_is_on_the_partition_of_its_key(scenario_raw):
    entries = entries_of([(m["routing_key"], m["body"]) for m in scenario_raw])
    packs, dead = Packer("c", "b").pack(entries, 5.0, PARTS.__getitem__)
    assert not dead
    seen_events = 0
    for record in packs:
        assert record.key is None and record.kind in (TASK, WORKER)
        value = orjson.loads(record.value)
        pack_schema.validate(value)
        assert (value["v"], value["cluster"], value["bridge"], value["read_until"]) == (2, "c", "b", 5.0)
        for item in value["events"]:
            event = item["event"]
            key = event["uuid"] if record.kind == TASK else f"c/{event['hostname']}"
            assert kafka_python_partition(key.encode(), 8) == record.partition
        seen_events += len(value["events"])
    assert seen_events == len(entries)
    # one pack per (topic, partition) for a flush this small, events in receive order
    assert len({(r.kind, r.partition) for r in packs}) == len(packs)
    seqs = [[item["seq"] for item in orjson.loads(r.value)["events"]] for r in packs]
    assert all(s == sorted(s) for s in seqs)


def test_packs_are_split_by_size_and_keep_order_and_every_event():
    entries = entries_of([("task.multi", [task("same-task", clock=i, note="x" * 200) for i in range(200)])])
    packer = Packer("c", "b", max_bytes=4096)
    packs, dead = packer.pack(entries, 1.0, PARTS.__getitem__)
    assert not dead and len(packs) > 5
    assert all(len(r.value) <= 4096 for r in packs)
    packs = [r for r in packs if r.kind == TASK]  # (and one worker pack: the worker's sign of life)
    assert len({r.partition for r in packs}) == 1  # one task: one partition, several packs
    seqs = [item["seq"] for r in packs for item in orjson.loads(r.value)["events"]]
    assert seqs == list(range(1, 201))


def test_an_oversized_event_travels_alone_and_a_huge_one_is_a_dead_letter():
    big, huge = task("u-big", args="y" * 10_000), task("u-huge", args="z" * 50_000)
    entries = entries_of([("task.multi", [task("u-a"), big, task("u-b")]), ("task.sent", huge)])
    packs, dead = Packer("c", "b", max_bytes=2048, max_message_bytes=30_000).pack(entries, 1.0, PARTS.__getitem__)
    alone = [r for r in packs if len(r.value) > 2048]
    assert len(alone) == 1 and [i["event"]["uuid"] for i in orjson.loads(alone[0].value)["events"]] == ["u-big"]
    assert {i["event"]["uuid"] for r in packs for i in orjson.loads(r.value)["events"]} == {"u-a", "u-big", "u-b"}
    (letter,) = dead
    value = orjson.loads(letter.value)
    assert letter.kind == DEAD and "too large" in value["reason"] and value["stage"] == "bridge"


def test_an_event_that_cannot_be_encoded_is_a_dead_letter_alone():
    entries = entries_of([("task.multi", [task("u1"), task("u2")])])
    entries[1].item["event"]["retries"] = 2**70  # orjson refuses integers beyond 64 bits
    packs, dead = Packer("c", "b").pack(entries, 1.0, PARTS.__getitem__)
    assert [i["event"]["uuid"] for r in packs for i in orjson.loads(r.value)["events"]] == ["u1"]
    assert len(dead) == 1 and "cannot be re-encoded" in orjson.loads(dead[0].value)["reason"]


def test_seen_signs_of_life_per_worker_in_its_partition():
    bodies = [("task.multi", [
        task("u1", "task-received", host="w1@h", ts=100.0),
        task("u2", "task-started", host="w1@h", ts=103.5),
        task("u3", "task-succeeded", host="w2@h", ts=99.0),
        task("u4", "task-sent", host="client@h", ts=98.0),  # a client's event: not a worker's sign of life
        {"type": "task-failed", "uuid": "u5", "timestamp": 1.0},  # no hostname
        task("u6", "task-started", host="w3@h", ts="late"),  # no usable timestamp
    ])]  # fmt: skip
    entries = entries_of(bodies, cluster="prod", received_at=50.0)
    entries += entries_of([("task.multi", [task("u7", "task-started", host="w1@h", ts=101.0)])], cluster="prod", received_at=51.0)
    packs, _ = Packer("prod", "b").pack(entries, 1.0, PARTS.__getitem__)
    worker_packs = [orjson.loads(r.value) | {"partition": r.partition} for r in packs if r.kind == WORKER]
    assert all(p["events"] == [] for p in worker_packs)  # only signs of life: seen-only packs
    seen = {s["hostname"]: (s, p["partition"]) for p in worker_packs for s in p["seen"]}
    assert set(seen) == {"w1@h", "w2@h"}
    w1, p1 = seen["w1@h"]
    assert (w1["received_at"], w1["timestamp"], w1["events"]) == (51.0, 103.5, 3)
    assert p1 == kafka_python_partition(b"prod/w1@h", 8)
    assert seen["w2@h"][0]["events"] == 1 and seen["w2@h"][1] == kafka_python_partition(b"prod/w2@h", 8)
    for p in worker_packs:
        pack_schema.validate({k: v for k, v in p.items() if k != "partition"})


def test_seen_rides_with_the_worker_events_of_its_partition():
    hb = {"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": 100.0, "freq": 2.0}
    entries = entries_of([("worker.heartbeat", hb), ("task.multi", [task("u1", host="w1@h", ts=100.5)])], cluster="prod")
    packs, _ = Packer("prod", "b").pack(entries, 1.0, PARTS.__getitem__)
    (worker,) = [orjson.loads(r.value) for r in packs if r.kind == WORKER]
    assert [i["event"]["type"] for i in worker["events"]] == ["worker-heartbeat"]
    assert [(s["hostname"], s["events"]) for s in worker["seen"]] == [("w1@h", 1)]


def test_tick_is_an_empty_worker_pack_and_decodes():
    record = Packer("prod", "b").empty(5, 123.25)
    assert (record.kind, record.partition, record.key) == (WORKER, 5, None)
    pack_schema.validate(orjson.loads(record.value))
    pack = decode_pack(record.value)
    assert (pack.cluster, pack.read_until, pack.entries, pack.seen) == ("prod", 123.25, (), ())


def test_repack_follows_a_new_partition_count_and_keeps_every_event_and_sign():
    entries = entries_of([("task.multi", [task(str(uuidlib.uuid4()), host=f"w{i % 5}@h") for i in range(60)])])
    packer = Packer("c", "b")
    packs, _ = packer.pack(entries, 1.0, PARTS.__getitem__)
    fewer = {TASK: 3, WORKER: 2}
    again, dead = packer.repack(packs, 2.0, fewer.__getitem__)
    assert not dead
    for record in again:
        value = orjson.loads(record.value)
        assert value["read_until"] == 2.0
        for item in value["events"]:
            assert kafka_python_partition(item["event"]["uuid"].encode(), 3) == record.partition
        for sign in value.get("seen", []):
            assert kafka_python_partition(f"c/{sign['hostname']}".encode(), 2) == record.partition
    before = sorted(i["seq"] for r in packs for i in orjson.loads(r.value)["events"])
    after = sorted(i["seq"] for r in again for i in orjson.loads(r.value)["events"])
    assert before == after
    signs = lambda records: sorted((s["hostname"], s["events"]) for r in records for s in orjson.loads(r.value).get("seen", []))  # noqa: E731
    assert signs(packs) == signs(again)


def test_repack_smaller_splits_and_dead_letters_a_single_refused_event():
    entries = entries_of([("task.multi", [task("one-task", clock=i, note="n" * 300) for i in range(20)])])
    packer = Packer("c", "b")
    (pack,) = [r for r in packer.pack(entries, 1.0, PARTS.__getitem__)[0] if r.kind == TASK]
    halves, dead = packer.repack([pack], 1.0, PARTS.__getitem__, max_bytes=len(pack.value) // 2)
    assert not dead and len(halves) >= 2 and all(len(r.value) <= len(pack.value) // 2 for r in halves)
    single = [r for r in halves if len(orjson.loads(r.value)["events"]) == 1] or [packer.pack(entries[:1], 1.0, PARTS.__getitem__)[0][0]]
    again, dead = packer.repack(single[:1], 1.0, PARTS.__getitem__, max_bytes=10)
    assert again == [] and len(dead) == 1 and "refused it for its size" in orjson.loads(dead[0].value)["reason"]


# -- read_until and ticks ----------------------------------------------------------------------------


def test_read_until_moves_only_on_an_observed_empty_queue_while_connected():
    p = Progress(tick_seconds=1.0, idle_wait=0.1)
    p.caught_up(5.0)
    assert p.read_until == 0.0  # not connected yet
    p.connect(10.0)
    p.idle_wait_ended(10.05, unacked=0)
    assert p.read_until == 0.0  # the broker had no full wait since the consumer started
    p.idle_wait_ended(10.2, unacked=0)
    assert p.read_until == 10.2
    p.acked(11.0)
    p.idle_wait_ended(11.05, unacked=0)  # just after an ack: the broker may not have delivered more yet
    p.idle_wait_ended(11.3, unacked=3)  # messages held: the prefetch window may be what stopped deliveries
    assert p.read_until == 10.2
    p.idle_wait_ended(11.3, unacked=0)
    assert p.read_until == 11.3
    p.caught_up(9.0)
    assert p.read_until == 11.3  # never backwards
    p.disconnect()
    p.caught_up(20.0)
    p.idle_wait_ended(20.0, unacked=0)
    assert p.read_until == 11.3  # never while disconnected


def test_read_until_from_queue_samples_at_most_once_a_second_and_frozen_by_a_backlog():
    p = Progress(tick_seconds=1.0, idle_wait=0.1)
    p.connect(100.0)
    assert p.sample_due(100.0)
    p.sampled(100.0, ready=5000)  # a backlog: read_until stays where it was
    assert p.read_until == 0.0 and not p.sample_due(100.5)
    assert p.sample_due(101.0)
    p.sampled(101.0, ready=0)
    assert p.read_until == 101.0
    assert not p.sample_due(101.9)  # fresh enough


def test_ticks_go_to_worker_partitions_without_a_pack_in_the_interval():
    p = Progress(tick_seconds=1.0, idle_wait=0.1)
    assert p.due_ticks(0.0, 4) == []  # not consuming
    p.connect(100.0)
    assert p.due_ticks(100.5, 4) == []  # not yet
    p.packed({1}, 100.6)
    assert p.due_ticks(101.0, 4) == [0, 2, 3]
    assert p.due_ticks(101.5, 4) == []
    p.packed({2}, 101.7)
    assert p.due_ticks(102.01, 4) == [0, 1, 3]  # a tick does not count as a pack: 0 and 3 again
    p.disconnect()
    assert p.due_ticks(103.0, 4) == []
    p.connect(200.0)  # reconnected after a long time: ticks resume one interval later
    assert p.due_ticks(200.5, 4) == [] and p.due_ticks(201.0, 4) == [0, 1, 2, 3]


@pytest.mark.parametrize("late", [0.0, 5.0])
def test_a_late_loop_ticks_once_not_once_per_missed_interval(late):
    p = Progress(tick_seconds=1.0, idle_wait=0.1)
    p.connect(0.0)
    assert p.due_ticks(1.0 + late, 2) == [0, 1]
    assert p.due_ticks(1.5 + late, 2) == []
