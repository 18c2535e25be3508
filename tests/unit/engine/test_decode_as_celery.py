"""Decode as Celery does (issue 19, item 5): what Celery's receiver (kombu's JSON = Python's json)
reads is read, by the bridge, the engine and the sink; one bad event of a task.multi batch is one
dead letter; older Celery shapes (signum as text, missing fields) are normalised."""

import json
import os

import orjson
import pytest
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads

from bridge.envelope import Entry, Enveloper, Routed
from bridge.packs import Packer
from streams import records
from streams.engine import Invalid, TaskEvent, Tracker
from streams.packs import decode_pack, loads
from streams.sink.rows import EVENT_COLUMNS, EventColumns

# A traceback naming a file whose name is Latin-1 bytes: Python decodes it with surrogateescape,
# so the text holds a lone surrogate and kombu writes it as the escape \udce9.
LATIN1_FILE = os.fsdecode(b"/srv/app/caf\xe9.py")
TRACEBACK = f'Traceback (most recent call last):\n  File "{LATIN1_FILE}", line 3, in run\nValueError: boom\n'


def _ev(etype, uuid, clock, ts, **fields):
    return {"type": etype, "uuid": uuid, "hostname": "w1@h", "pid": 42, "clock": clock, "timestamp": ts, **fields}


def _batch():
    """A task.multi body: the failing task's events and two other tasks', as kombu writes it."""
    events = []
    for i, uuid in enumerate(("ok-1", "bad-tb", "ok-2")):
        base = 100.0 + i
        events += [_ev("task-received", uuid, 10 * i + 1, base, name="t.x", retries=0),
                   _ev("task-started", uuid, 10 * i + 2, base + 0.1)]  # fmt: skip
        if uuid == "bad-tb":
            events.append(_ev("task-failed", uuid, 10 * i + 3, base + 0.2, exception="ValueError('boom')", traceback=TRACEBACK))
        else:
            events.append(_ev("task-succeeded", uuid, 10 * i + 3, base + 0.2, result="'ok'", runtime=0.1))
    return events, kombu_dumps(events).encode()


def test_the_fast_decoders_refuse_what_celery_reads():
    _, body = _batch()
    assert b"\\udce9" in body
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    assert kombu_loads(body)[5]["traceback"] == TRACEBACK  # Celery's receiver reads it
    value = loads(body)
    assert len(value) == 9
    assert value[5]["traceback"] == TRACEBACK.replace("\udce9", "\\udce9")  # the escape, as text
    orjson.dumps(value)  # and every writer can write it again


def test_the_bridge_packs_the_whole_batch_and_the_engine_folds_every_task():
    events, body = _batch()
    env = Enveloper("prod", "host:1")
    out = env.wrap(body, "task.multi", 200.0)
    assert [o for o in out if isinstance(o, Routed)] == []  # no dead letter
    entries = [o for o in out if isinstance(o, Entry)]
    assert len(entries) == 9
    packs, dead = Packer("prod", "host:1").pack(entries, 199.0, lambda kind: 2)
    assert dead == []
    tracker = Tracker()
    for pack in packs:
        for item in records.decode(pack.value):
            assert not isinstance(item, Invalid)
            tracker.add(item)
    states = {r["uuid"]: r for r in tracker.task_records()}
    assert {u: s["state"] for u, s in states.items()} == {"ok-1": "SUCCEEDED", "bad-tb": "FAILED", "ok-2": "SUCCEEDED"}
    assert states["bad-tb"]["traceback"] == TRACEBACK.replace("\udce9", "\\udce9")
    assert states["bad-tb"]["exception_type"] == "ValueError"
    # the documented decoder reads the same packs
    assert sum(len(decode_pack(p.value).entries) for p in packs) == 9


def test_the_engine_reads_raw_bodies_the_fast_decoder_refuses():
    _, body = _batch()
    items = records.decode(body)  # a raw task.multi body (replay, a v1 producer)
    assert len(items) == 9 and all(isinstance(i, TaskEvent) for i in items)


def test_one_bad_event_of_a_batch_is_one_dead_letter_the_others_fold():
    events, _ = _batch()
    events.insert(4, _ev("task-started", "ok-9", 99, 101.5, pid="forty-two"))  # a pid as text
    events.insert(2, "not an event")
    body = kombu_dumps(events).encode()
    out = Enveloper("prod", "host:1").wrap(body, "task.multi", 200.0)
    dead = [o for o in out if isinstance(o, Routed)]
    assert len(dead) == 1 and b"not an event object" in dead[0].value
    entries = [o for o in out if isinstance(o, Entry)]
    packs, _ = Packer("prod", "host:1").pack(entries, 199.0, lambda kind: 1)
    tracker, invalid = Tracker(), []
    for pack in packs:
        for item in records.decode(pack.value):
            (invalid.append(item) if isinstance(item, Invalid) else tracker.add(item))
    assert [i.reason for i in invalid] == ["field 'pid' or 'clock' is not an integer"]
    assert {r["uuid"]: r["state"] for r in tracker.task_records()} == {"ok-1": "SUCCEEDED", "bad-tb": "FAILED", "ok-2": "SUCCEEDED"}


def test_the_sink_reads_a_pack_msgspec_refuses():
    events, _ = _batch()
    pack = {"v": 2, "cluster": "c", "bridge": "b", "read_until": 0,
            "events": [{"seq": i + 1, "received_at": 200.0, "event": e} for i, e in enumerate(events)]}  # fmt: skip
    value = json.dumps(pack).encode()  # a lone surrogate escape, as Python's json writes it
    columns = EventColumns()
    assert columns.add_pack(value) == 9 and columns.skipped == 0
    rows = [dict(zip(EVENT_COLUMNS, row)) for row in columns.rows()]
    failed = next(r for r in rows if r["type"] == "task-failed")
    assert orjson.loads(failed["body"])["traceback"] == TRACEBACK.replace("\udce9", "\\udce9")
    for row in rows:  # every text column is UTF-8 the ClickHouse driver can send
        for v in row.values():
            if isinstance(v, str):
                v.encode("utf-8")


def test_a_record_neither_decoder_reads_is_still_one_dead_letter():
    assert [i.reason[:8] for i in records.decode(b'{"type": "task-sent", ')] == ["not JSON"]
    with pytest.raises(ValueError):
        loads(b"\xff\xfe{")


# -- older Celery shapes ---------------------------------------------------------------------
def _celery4_terminated(signum):
    """Celery 4.x Request.terminate announces the signal as text; its task-received has no
    root_id/parent_id, its heartbeat no sw_* fields and no loadavg."""
    return [
        {"type": "task-received", "uuid": "u4", "name": "t.long", "args": "()", "kwargs": "{}", "retries": 0, "eta": None,
         "expires": None, "hostname": "celery@old", "timestamp": 50.0, "clock": 3, "pid": 7, "local_received": 50.1},
        {"type": "task-started", "uuid": "u4", "hostname": "celery@old", "timestamp": 50.2, "clock": 4, "pid": 7},
        {"type": "task-revoked", "uuid": "u4", "terminated": True, "signum": signum, "expired": False,
         "hostname": "celery@old", "timestamp": 51.0, "clock": 5, "pid": 7},
        {"type": "worker-heartbeat", "hostname": "celery@old", "timestamp": 51.5, "clock": 6, "pid": 7, "freq": 2.0,
         "active": 0, "processed": 1},
    ]  # fmt: skip


@pytest.mark.parametrize("signum", ["15", "SIGTERM", "TERM", 15])
def test_celery4_signum_as_text_is_normalised(signum):
    tracker = Tracker()
    for body in _celery4_terminated(signum):
        for item in records.decode(orjson.dumps(body)):
            assert not isinstance(item, Invalid), item
            tracker.add(item)
    (record,) = tracker.task_records()
    assert (record["state"], record["revocation_reason"], record["signum"], record["name"]) == ("REVOKED", "terminated", 15, "t.long")


def test_celery3_flags_as_numbers_and_unknown_signal_text():
    body = {"type": "task-revoked", "uuid": "u", "terminated": 1, "expired": 0, "signum": "9", "hostname": "h", "timestamp": 1.0}
    (item,) = records.decode(orjson.dumps(body))
    assert (item.body["terminated"], item.body["expired"], item.body["signum"]) == (True, False, 9)
    bad = {**body, "signum": "sometimes"}
    (item,) = records.decode(orjson.dumps(bad))
    assert isinstance(item, Invalid) and "signum" in item.reason


def test_nesting_deeper_than_pythons_stack_is_one_clear_dead_letter_not_a_crash():
    body = b"[" * 3000 + b"1" + b"]" * 3000  # orjson stops at 1024 levels, json at the recursion limit
    with pytest.raises(ValueError, match="nesting too deep"):
        loads(body)
    (letter,) = Enveloper("prod", "host:1").wrap(body, "task.multi", 1.0)
    assert b"body is not JSON: nesting too deep" in letter.value
    assert [i.reason for i in records.decode(body)] == ["not JSON: nesting too deep"]
