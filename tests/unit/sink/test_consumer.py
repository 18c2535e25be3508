"""The sink loop with a fake Kafka consumer and a fake ClickHouse writer: offsets are committed
only for batches that are in ClickHouse, while the next batch is collected during an insert."""

import threading

import orjson

from streams.config import Settings
from streams.clickhouse import ClickHouseUnavailable
from streams.sink.consumer import ClickHouseSink
from streams.sink.rows import EVENT_COLUMNS

SETTINGS = Settings.load(environ={}).replace(sink_batch_rows=3, sink_batch_seconds=0.05, sink_min_insert_interval=0.0)
TOPIC = SETTINGS.topic_task_events


class Message:
    def __init__(self, offset: int, uuid: str):
        self._offset = offset
        event = {"type": "task-started", "uuid": uuid, "hostname": "w@h", "timestamp": 1.0 + offset}
        self._value = orjson.dumps({"v": 2, "cluster": "c", "bridge": "b", "read_until": 0, "events": [{"seq": offset + 1, "received_at": 1.0, "event": event}]})

    def error(self):
        return None

    def topic(self):
        return TOPIC

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def value(self):
        return self._value


class FakeConsumer:
    def __init__(self, messages, log):
        self.messages, self.log = list(messages), log

    def consume(self, num_messages=1, timeout=0.0):
        taken, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return taken

    def poll(self, timeout=0.0):
        taken = self.consume(1, timeout)
        return taken[0] if taken else None

    def commit(self, offsets=None, asynchronous=True):
        self.log.append(("commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

    def assignment(self):
        return []

    def pause(self, partitions):
        self.log.append(("pause",))

    def resume(self, partitions):
        self.log.append(("resume",))

    def close(self):
        self.log.append(("close",))


class FakeWriter:
    def __init__(self, log, fail_first=0, gate=None):
        self.log, self.fail_first, self.gate, self.rows = log, fail_first, gate, []

    def insert_columns(self, table, columns, values):
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_first:
            self.fail_first -= 1
            self.log.append(("refused",))
            raise ClickHouseUnavailable("down")
        uuids = list(values[columns.index("uuid")])
        self.rows += uuids
        self.log.append(("insert", uuids))
        return len(uuids)

    def insert(self, table, columns, rows):
        return len(rows)


def run_sink(sink, stop_when):
    def stopper():
        while not stop_when():
            threading.Event().wait(0.01)
        sink.stop()

    threading.Thread(target=stopper, daemon=True).start()
    sink.run()


def sink_with(messages, writer, log):
    sink = ClickHouseSink(SETTINGS, writer)
    sink._connect = lambda: setattr(sink, "consumer", FakeConsumer(messages, log))
    return sink


def test_offsets_are_committed_after_their_insert_and_only_theirs():
    log = []
    writer = FakeWriter(log)
    sink = sink_with([Message(i, f"u{i}") for i in range(7)], writer, log)
    run_sink(sink, lambda: len(writer.rows) == 7)
    assert writer.rows == [f"u{i}" for i in range(7)]
    inserted = 0
    for entry in log:
        if entry[0] == "insert":
            inserted += len(entry[1])
        if entry[0] == "commit":
            ((_, _, offset),) = entry[1]
            assert offset <= inserted, log  # never past a row that is not in ClickHouse
    assert [e for e in log if e[0] == "commit"][-1] == ("commit", [(TOPIC, 0, 7)])
    assert log[-1] == ("close",)


def test_the_next_batch_is_collected_while_an_insert_runs():
    log = []
    gate = threading.Event()
    writer = FakeWriter(log, gate=gate)
    sink = sink_with([Message(i, f"u{i}") for i in range(6)], writer, log)
    consumed = []
    consume = FakeConsumer.consume

    def watching(self, num_messages=1, timeout=0.0):
        taken = consume(self, num_messages, timeout)
        consumed.extend(taken)
        if len(consumed) == 6:
            gate.set()  # all six read while the first insert was still waiting
        return taken

    FakeConsumer.consume = watching
    try:
        run_sink(sink, lambda: len(writer.rows) == 6)
    finally:
        FakeConsumer.consume = consume
    assert writer.rows == [f"u{i}" for i in range(6)]


def test_clickhouse_down_retries_the_batch_then_commits():
    log = []
    writer = FakeWriter(log, fail_first=2)  # the background insert and the first retry fail
    sink = sink_with([Message(i, f"u{i}") for i in range(3)], writer, log)
    run_sink(sink, lambda: len(writer.rows) == 3)
    kinds = [e[0] for e in log]
    assert kinds.index("commit") > kinds.index("insert") > kinds.index("refused")
    assert kinds.index("pause") < kinds.index("insert") < kinds.index("resume")  # no fetching while ClickHouse is down
    assert writer.rows == ["u0", "u1", "u2"]


def test_continuity_seeks_back_over_a_jump_and_accepts_only_what_the_log_lacks():
    from streams.sink.consumer import Continuity

    c = Continuity()
    tp = ("celery.task-events.v2", 5)
    c.assign(tp, 15)  # the group's committed offset
    assert c.check(tp, 15) == Continuity.OK and c.expected[tp] == 16
    assert c.check(tp, 39) == Continuity.SEEK  # a jump (an offset reset after a broker restart): read 16.. again
    assert c.expected[tp] == 16  # (librdkafka purges the partition's fetched records on a seek)
    assert c.check(tp, 16) == Continuity.OK and c.check(tp, 17) == Continuity.OK  # the records it had skipped
    assert c.check(tp, 16) == Continuity.OLD  # a record taken already (fetched again) is dropped
    assert c.check(tp, 20) == Continuity.SEEK  # 18, 19 missing: seek back to 18 ...
    assert c.check(tp, 20) == Continuity.OK  # ... and the log answers 20 again: 18 and 19 are not in it
    assert c.expected[tp] == 21


def test_continuity_of_a_new_group_starts_anywhere():
    from streams.sink.consumer import Continuity

    c = Continuity()
    tp = ("t", 0)
    c.assign(tp, None)
    assert c.check(tp, 7) == Continuity.OK and c.expected[tp] == 8
    c.revoke(tp)
    assert c.check(tp, 100) == Continuity.OK


def test_a_read_back_across_a_hole_in_the_log_keeps_every_record_after_it(monkeypatch):
    """A stalled partition read back (streams.stalls.fetch_ranges) whose log lacks an offset (a
    Tansu broker restarted mid-produce left one out): the records after the hole are inserted and
    the partition goes on after the last of them. They were dropped as a "jump" while the read-back
    moved the expected offset past them: lost for good (the broker-restart chaos run lost 76-184
    events from ClickHouse's events table that way)."""
    from types import SimpleNamespace

    import streams.sink.consumer as consumer_module
    from streams.sink.consumer import Batch

    log = []
    sink = sink_with([], FakeWriter(log), log)
    sink._connect()
    sought = []
    sink.consumer.seek = lambda tp: sought.append((tp.topic, tp.partition, tp.offset))
    tp = (TOPIC, 0)
    sink.continuity.assign(tp, 4)
    sink.continuity.progress[tp] -= 60  # nothing delivered for a minute
    held = [4, 5, 7, 8, 9]  # offset 6 is not in the log
    monkeypatch.setattr(sink, "_log_ends", lambda tps: {tp: 10})
    monkeypatch.setattr(consumer_module, "fetch_ranges", lambda settings, ranges: {
        tp: [SimpleNamespace(offset=o, value=Message(o, f"u{o}").value()) for o in held if o in ranges[tp]]})  # fmt: skip
    batch = Batch()
    sink._repair_stalls(batch)
    assert list(batch.events.columns[EVENT_COLUMNS.index("uuid")]) == [f"u{o}" for o in held]
    assert batch.offsets[tp] == 10 and sink.continuity.expected[tp] == 10
    assert sought == [(TOPIC, 0, 10)]  # the consumer goes on after the read-back, not back into it
