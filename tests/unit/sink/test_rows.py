import orjson
import pytest

from streams.engine import Tracker
from streams.sink.rows import EVENT_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, EventColumns, event_row, task_row, worker_row


def test_rows_have_every_column(scenario_events):
    t = Tracker()
    for e in scenario_events:
        t.feed(e, "c")
    for record in t.task_records():
        row = dict(zip(TASK_COLUMNS, task_row(record)))
        assert len(row) == len(TASK_COLUMNS)
        assert row["version"] == 2 * record["events_count"] + (record["orphaned_at"] is not None) and row["cluster"] == "c"
    for record in t.worker_records():
        assert len(worker_row(record)) == len(WORKER_COLUMNS)


def test_worker_version_follows_the_monitor_clock_only():
    # the worker's own clock is 45 s behind: its timestamps must not decide which row is newer
    base = {"online_at": 10.0 - 45, "heartbeat_at": 12.0 - 45, "offline_at": None, "loadavg": [0.1, "x"], "seen_at": 12.0}
    row = dict(zip(WORKER_COLUMNS, worker_row(base)))
    assert (row["version"], row["loadavg"]) == (12000, [0.1])
    row = dict(zip(WORKER_COLUMNS, worker_row({**base, "judged_at": 20.0})))  # judged gone at watermark 20
    assert row["version"] == 20000
    legacy = {"online_at": 10.0, "heartbeat_at": 12.0, "offline_at": None, "evaluated_at": 15.0}
    assert dict(zip(WORKER_COLUMNS, worker_row(legacy)))["version"] == 15000


def test_event_row_keeps_the_body_and_refuses_non_events():
    env = {"cluster": "c", "bridge": "b", "seq": 3, "received_at": 1.5, "event": {"type": "task-sent", "uuid": "u", "timestamp": 1.25, "clock": 7, "pid": 1, "name": "n"}}
    row = dict(zip(EVENT_COLUMNS, event_row(env)))
    assert (row["uuid"], row["clock"], row["timestamp"], row["name"], row["seq"]) == ("u", 7, 1.25, "n", 3)
    assert b'"clock":7' in row["body"]  # bytes: the driver sends them as they are
    assert event_row({"event": "x"}) is None
    assert event_row({"event": {"timestamp": "bad"}}) is None


def test_event_columns_from_a_pack_skip_what_is_not_an_event():
    pack = {"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [
        {"seq": 1, "received_at": 2.0, "event": {"type": "task-sent", "uuid": "u", "timestamp": 86400.5, "pid": True, "args": [1, {"k": "é"}]}},
        {"seq": 2, "received_at": 2.0, "event": ["not", "an", "event"]},
        {"seq": 3, "received_at": 2.5, "event": {"type": "worker-heartbeat", "hostname": "w@h", "timestamp": 3, "clock": -1}},
        {"seq": 4, "received_at": 2.5, "event": {"type": "task-started", "uuid": "u", "timestamp": "late"}},
    ]}  # fmt: skip
    columns = EventColumns()
    assert columns.add_pack(orjson.dumps(pack)) == 2 and (columns.size, columns.skipped) == (2, 2)
    rows = [dict(zip(EVENT_COLUMNS, row)) for row in columns.rows()]
    assert [(r["seq"], r["type"], r["pid"], r["clock"], r["timestamp"], r["event_time"]) for r in rows] == [
        (1, "task-sent", 0, 0, 86400.5, 86400), (3, "worker-heartbeat", 0, 0, 3.0, 3)
    ]
    assert str(rows[0]["event_date"]) == "1970-01-02" and rows[1]["hostname"] == "w@h" and rows[0]["bridge"] == "b"
    assert orjson.loads(rows[0]["body"]) == pack["events"][0]["event"]  # the body: the event's bytes as the pack holds them
    assert rows[0]["body"] == orjson.dumps(pack["events"][0]["event"])
    assert all(len(column) == 2 for column in columns.columns)


@pytest.mark.parametrize("timestamp", [1.7e12, -1.0, 4294967296, 1e300])
def test_an_event_whose_timestamp_a_datetime_cannot_hold_is_skipped_not_a_crash(timestamp):
    """A millisecond timestamp (or a negative one) once raised OverflowError in the sink, which
    stopped the streams worker with it, again at every restart (the batch is never committed)."""
    pack = {"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [
        {"seq": 1, "received_at": 2.0, "event": {"type": "task-sent", "uuid": "u", "timestamp": timestamp}},
        {"seq": 2, "received_at": 2.0, "event": {"type": "task-received", "uuid": "u", "timestamp": 10.0}},
    ]}  # fmt: skip
    columns = EventColumns()
    assert columns.add_pack(orjson.dumps(pack)) == 1 and (columns.size, columns.skipped) == (1, 1)
    assert [dict(zip(EVENT_COLUMNS, row))["seq"] for row in columns.rows()] == [2]


def test_events_not_typed_as_the_columns_get_the_column_defaults():
    odd = [
        {"type": "task-sent", "uuid": "u1", "timestamp": 1.5, "name": None, "pid": "12", "clock": 2**70},
        {"type": "task-sent", "uuid": "u2", "timestamp": 2, "pid": 2**33, "hostname": ["h"], "clock": 5},
        {"type": 7, "uuid": "u3", "timestamp": 3.0, "pid": False},
    ]
    pack = {"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [{"seq": i, "received_at": 1, "event": e} for i, e in enumerate(odd)]}
    columns = EventColumns()
    assert columns.add_pack(_dumps_big(pack)) == 3
    rows = [dict(zip(EVENT_COLUMNS, row)) for row in columns.rows()]
    assert [(r["uuid"], r["type"], r["hostname"], r["pid"], r["clock"], r["name"], r["timestamp"]) for r in rows] == [
        ("u1", "task-sent", "", 0, 0, "", 1.5), ("u2", "task-sent", "", 0, 5, "", 2.0), ("u3", "", "", 0, 0, "", 3.0)
    ]


def _dumps_big(value) -> bytes:
    """JSON with integers beyond 64 bits (orjson refuses them; a producer's body may hold them)."""
    import json

    return json.dumps(value).encode()


def test_a_record_that_is_not_a_pack_is_refused():
    for value in (b"{nope", b"[1]", orjson.dumps({"v": 1, "event": {}}), orjson.dumps({"v": 2, "events": 5})):
        with pytest.raises(ValueError):
            EventColumns().add_pack(value)
