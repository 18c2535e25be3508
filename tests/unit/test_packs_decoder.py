"""streams/packs.py: the documented decoder of the bridge's packs, and records.decode on packs."""

import subprocess
import sys

import orjson
import pytest

from bridge.envelope import Entry, Enveloper
from bridge.packs import Packer
from streams import records
from streams.engine import Invalid, Sighting, TaskEvent, Tick, WorkerEvent
from streams.packs import InvalidPack, Pack, decode_pack


def packed(bodies, cluster="prod"):
    env = Enveloper(cluster, "host:1")
    entries = [e for rk, body in bodies for e in env.wrap(orjson.dumps(body), rk, 7.5) if isinstance(e, Entry)]
    packs, dead = Packer(cluster, "host:1").pack(entries, 6.0, lambda kind: 1)
    assert not dead
    return packs


def test_decode_pack_gives_entries_and_signs_of_life():
    events = [{"type": "task-received", "uuid": "u1", "hostname": "w@h", "timestamp": 5.0, "clock": 2, "pid": 3},
              {"type": "task-started", "uuid": "u1", "hostname": "w@h", "timestamp": 5.5, "clock": 3, "pid": 3}]  # fmt: skip
    task_pack, worker_pack = packed([("task.multi", events)])
    pack = decode_pack(task_pack.value)
    assert isinstance(pack, Pack) and (pack.cluster, pack.bridge, pack.read_until) == ("prod", "host:1", 6.0)
    assert [(e.seq, e.received_at, e.routing_key, e.event, e.redacted) for e in pack.entries] == [
        (1, 7.5, "task.multi", events[0], ()), (2, 7.5, "task.multi", events[1], ())
    ]
    signs = decode_pack(worker_pack.value)
    assert signs.entries == () and [(s.hostname, s.received_at, s.timestamp, s.events) for s in signs.seen] == [("w@h", 7.5, 5.5, 2)]


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "empty"),
        (b"{nope", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"v": 1, "cluster": "c", "event": {}}', "version 1"),
        (b'{"v": 2, "cluster": 3, "bridge": "b", "read_until": 0, "events": []}', "'cluster'"),
        (b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": "x", "events": []}', "read_until"),
        (b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": {}}', "'events'"),
        (b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [{"seq": 1}]}', "events[0]"),
        (b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [{"seq": "1", "received_at": 0, "event": {}}]}', "'seq'"),
        (b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [], "seen": [{"hostname": "h"}]}', "seen[0]"),
    ],
)
def test_invalid_packs_raise_a_clear_reason(value, reason):
    with pytest.raises(InvalidPack, match=None) as caught:
        decode_pack(value)
    assert reason in caught.value.reason


def test_records_decode_gives_the_engine_events_of_a_pack_with_its_cluster():
    bodies = [("task.multi", [{"type": "task-started", "uuid": "u1", "hostname": "w@h", "timestamp": 5.0},
                              {"type": "task-started", "uuid": "u2", "timestamp": "bad"}]),
              ("worker.heartbeat", {"type": "worker-heartbeat", "hostname": "w@h", "timestamp": 5.0, "freq": 2.0})]  # fmt: skip
    task_pack, worker_pack = packed(bodies)
    started, bad, tick = records.decode(task_pack.value)
    assert isinstance(started, TaskEvent) and (started.cluster, started.uuid) == ("prod", "u1")
    assert started.received is not None  # the bridge's receive time rides along
    assert isinstance(bad, Invalid) and "timestamp" in bad.reason
    assert isinstance(tick, Tick)
    heartbeat, seen, tick = records.decode(worker_pack.value)
    assert isinstance(heartbeat, WorkerEvent) and heartbeat.key == "prod/w@h"
    assert isinstance(seen, Sighting) and (seen.key, seen.events) == ("prod/w@h", 1)  # task events: signs of life
    (tick,) = records.decode(Packer("prod", "b").empty(0, 1.0).value)  # a tick holds no event
    assert isinstance(tick, Tick) and tick.read_until == 1.0
    (invalid,) = records.decode(b'{"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": 5}')
    assert isinstance(invalid, Invalid) and "events" in invalid.reason


def test_the_decoder_imports_only_orjson():
    code = "import sys, streams.packs\nprint(','.join(m for m in ('faust', 'streams.engine', 'kafka', 'confluent_kafka') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""
