import json

import orjson
import pytest

from bridge.envelope import Enveloper
from bridge.metrics import BridgeMetrics
from bridge.redact import Redactor

EVENT = {"type": "task-sent", "uuid": "u", "timestamp": 1.0, "clock": 3, "args": "('secret',)", "kwargs": "{'pw': 'x'}", "name": "t"}


def wrapped(redactor):
    (entry,) = Enveloper("c", "b", redactor).wrap(json.dumps(EVENT).encode(), "task.sent", 0)
    return orjson.loads(orjson.dumps(entry.item))


def test_hash_mode_keeps_equality_not_content():
    env = wrapped(Redactor(("args", "kwargs"), "hash"))
    assert env["event"]["args"].startswith("sha256:") and "secret" not in env["event"]["args"]
    assert env["redacted"] == ["args", "kwargs"]
    assert {k: v for k, v in env["event"].items() if k not in ("args", "kwargs")} == {k: v for k, v in EVENT.items() if k not in ("args", "kwargs")}
    assert wrapped(Redactor(("args",), "hash"))["event"]["args"] == env["event"]["args"]


def test_drop_and_truncate():
    assert "kwargs" not in wrapped(Redactor(("kwargs",), "drop"))["event"]
    assert wrapped(Redactor(("args",), "truncate", 4))["event"]["args"] == "('se"
    assert "redacted" not in wrapped(None)
    assert "redacted" not in wrapped(Redactor(("result",), "hash"))  # absent field: nothing redacted


def test_bad_redaction_settings_are_refused():
    with pytest.raises(ValueError, match="cannot redact"):
        Redactor(("traceback",))
    with pytest.raises(ValueError, match="mode"):
        Redactor(("args",), "rot13")
    assert Redactor.from_settings("", "hash", 1) is None
    assert Redactor.from_settings("args, result", "drop", 1).fields == ("args", "result")


def test_metrics_text_and_health():
    m = BridgeMetrics()
    m.events_in.labels("c", "task").inc(3)
    m.dead_letters.labels("c").inc()
    from prometheus_client import generate_latest

    text = generate_latest(m.registry).decode()
    assert 'bridge_events_in_total{cluster="c",type="task"} 3.0' in text
    assert 'bridge_dead_letters_total{cluster="c"} 1.0' in text
    assert m.health()[0] == 503  # no loop has run yet
    m.tick("c")
    assert m.health()[0] == 200
    m.tick("c")
    m.last_tick["c"] -= 1000
    status, body = m.health()
    assert (status, body["status"], body["stuck"]) == (503, "stuck", ["c"])
