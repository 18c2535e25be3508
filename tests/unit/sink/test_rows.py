from streams.engine import Tracker
from streams.sink.rows import EVENT_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, event_row, task_row, worker_row


def test_rows_have_every_column(scenario_events):
    t = Tracker()
    for e in scenario_events:
        t.feed(e, "c")
    for record in t.task_records():
        row = dict(zip(TASK_COLUMNS, task_row(record)))
        assert len(row) == len(TASK_COLUMNS)
        assert row["version"] == record["events_count"] and row["cluster"] == "c"
    for record in t.worker_records():
        assert len(worker_row(record)) == len(WORKER_COLUMNS)


def test_worker_version_follows_the_newest_fact():
    base = {"online_at": 10.0, "heartbeat_at": 12.0, "offline_at": None, "loadavg": [0.1, "x"]}
    row = dict(zip(WORKER_COLUMNS, worker_row(base)))
    assert (row["version"], row["loadavg"]) == (12000, [0.1])
    row = dict(zip(WORKER_COLUMNS, worker_row({**base, "evaluated_at": 20.0})))
    assert row["version"] == 20000


def test_event_row_keeps_the_body_and_refuses_non_events():
    env = {"cluster": "c", "bridge": "b", "seq": 3, "received_at": 1.5, "event": {"type": "task-sent", "uuid": "u", "timestamp": 1.25, "clock": 7, "pid": 1, "name": "n"}}
    row = dict(zip(EVENT_COLUMNS, event_row(env)))
    assert (row["uuid"], row["clock"], row["timestamp"], row["name"], row["seq"]) == ("u", 7, 1.25, "n", 3)
    assert '"clock":7' in row["body"]
    assert event_row({"event": "x"}) is None
    assert event_row({"event": {"timestamp": "bad"}}) is None
