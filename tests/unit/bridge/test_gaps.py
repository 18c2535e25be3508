import json

import orjson
from jsonschema import Draft202012Validator

from bridge.envelope import STATUS, WORKER, Enveloper
from bridge.gaps import GapDetector
from tests.unit.test_schemas import SCHEMAS


def hb(ts, host="w@h", freq=2.0):
    return {"type": "worker-heartbeat", "hostname": host, "timestamp": ts, "freq": freq, "clock": int(ts)}


def test_heartbeat_gap_is_reported_with_missing_count():
    d = GapDetector("c", "b")
    assert d.on_event(hb(100.0)) is None
    assert d.on_event(hb(102.1)) is None  # on time (a little drift)
    gap = d.on_event(hb(112.1))
    assert (gap["gap"], gap["hostname"], gap["missing_heartbeats"], gap["from"], gap["to"]) == ("heartbeat", "w@h", 4, 102.1, 112.1)
    assert d.on_event(hb(100.5)) is None  # a late duplicate does not move the clock back
    assert d.on_event(hb(200.0, host="other@h")) is None  # first heartbeat of a worker: nothing to compare


def test_worker_offline_resets_and_disconnect_record_validates():
    d = GapDetector("c", "b")
    d.on_event(hb(100.0))
    d.on_event({"type": "worker-offline", "hostname": "w@h", "timestamp": 101.0})
    assert d.on_event(hb(300.0)) is None  # a restart, not a gap
    schema = Draft202012Validator(json.loads((SCHEMAS / "bridge-status.v1.json").read_text()))
    schema.validate(d.on_disconnect(50.0, 60.0, "ConnectionError('Connection closed by server.')"))
    d.on_event(hb(310.0))
    schema.validate(d.on_event(hb(320.0)))


def test_enveloper_emits_a_status_record_beside_the_event():
    env = Enveloper("c", "b")
    env.gaps = GapDetector("c", "b")
    env.wrap(json.dumps(hb(100.0)).encode(), "worker.heartbeat", 0)
    out = env.wrap(json.dumps(hb(110.0)).encode(), "worker.heartbeat", 0)
    assert [r.kind for r in out] == [STATUS, WORKER]
    assert out[0].key == b"c" and orjson.loads(out[0].value)["missing_heartbeats"] == 4
