"""The receiver's flush and tick paths with a fake broker message and a fake Kafka producer:
packs go out before the broker ack, a refused send is retried without re-packing, ticks carry
read_until."""


import orjson

from bridge.envelope import TASK, WORKER, Enveloper
from bridge.producer import KafkaUnavailable
from bridge.receiver import BrokerReceiver
from streams.config import Settings
from streams.packs import decode_pack


class FakeMessage:
    def __init__(self, body, routing_key, log):
        self.body, self.headers, self.delivery_info, self.log = orjson.dumps(body), {}, {"routing_key": routing_key}, log

    def ack(self, multiple=False):
        self.log.append(("ack", multiple))


class FakeProducer:
    def __init__(self, log, fail=0):
        self.log, self.fail, self.batches = log, fail, []

    def partitions(self, kind):
        return 4

    def send_all(self, records, repack=None):
        if self.fail:
            self.fail -= 1
            self.log.append(("refused", len(records)))
            raise KafkaUnavailable("paused")
        self.batches.append(records)
        self.log.append(("kafka", len(records)))


def receiver(log, fail=0, **overrides):
    settings = Settings.load(environ={}).replace(cluster="prod", bridge_tick_seconds=1.0, **overrides)
    producer = FakeProducer(log, fail)
    return BrokerReceiver(settings, Enveloper("prod", "b"), producer), producer


def events(n, host="w1@h"):
    return [{"type": "task-started", "uuid": f"u{i}", "hostname": host, "timestamp": 1.0 + i, "clock": i} for i in range(n)]


def test_flush_sends_packs_then_acks_the_broker():
    log = []
    r, producer = receiver(log)
    r.pending = [(FakeMessage(events(20), "task.multi", log), 10.0), (FakeMessage({"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": 2.0}, "worker.heartbeat", log), 10.5)]
    r.progress.connect(0.0)
    r.progress.caught_up(9.0)
    r._flush(acks=True)
    assert [entry[0] for entry in log] == ["kafka", "ack"]  # Kafka first, then the broker ack
    (records,) = producer.batches
    packs = [decode_pack(rec.value) for rec in records]
    assert sum(len(p.entries) for p in packs) == 21 and all(p.read_until == 9.0 for p in packs)
    assert {rec.kind for rec in records} == {TASK, WORKER} and all(rec.partition is not None for rec in records)
    assert len(records) <= 4 + 1  # at most one pack per partition: 4 task partitions, 1 worker's
    assert r.pending == [] and r.counts["events"] == 21 and r.counts["packs"] == len(records)
    worker_partition = next(rec.partition for rec in records if rec.kind == WORKER)
    assert r.progress.last_pack[worker_partition] > 0


def test_kafka_refusing_holds_the_ack_and_retries_the_same_packs():
    log = []
    r, producer = receiver(log, fail=1)
    r.pending = [(FakeMessage(events(10), "task.multi", log), 10.0)]
    r._flush(acks=True)
    assert [entry[0] for entry in log] == ["refused", "kafka", "ack"]
    assert log[0][1] == log[1][1]  # packed once: the retry sends the very same records


def test_redis_read_until_moves_only_when_a_read_found_nothing_and_ticks_fill_quiet_partitions(monkeypatch):
    """Pub/sub keeps nothing at the broker, but what was published while the bridge did not read
    waits in its socket: neither a flush nor a tick may claim it was read (a false worker-lost
    after a pause); a read that found nothing left (the loop's socket.timeout) does."""
    log = []
    r, producer = receiver(log)
    clock = [1000.0]
    monkeypatch.setattr("bridge.receiver.time.time", lambda: clock[0])
    r.progress.connect(clock[0])
    r.pending = [(FakeMessage({"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": 2.0}, "worker.heartbeat", log), 999.0)]
    clock[0] = 1000.4
    r._flush(acks=False)  # Redis: no ack, and no claim about what still waits in the socket
    (records,) = producer.batches
    assert decode_pack(records[0].value).read_until == 0.0 and "ack" not in [e[0] for e in log]
    busy = records[0].partition
    r.progress.caught_up(1000.5)  # a read at 1000.5 found nothing left
    clock[0] = 1001.0
    r._tick(acks=False)
    ticks = producer.batches[-1]
    assert sorted(t.partition for t in ticks) == sorted(set(range(4)) - {busy})
    assert all(decode_pack(t.value).entries == () and decode_pack(t.value).read_until == 1000.5 for t in ticks)
    clock[0] = 1001.5
    r._tick(acks=False)
    assert len(producer.batches) == 2  # nothing due between ticks


def test_a_body_that_cannot_be_decompressed_is_a_dead_letter_not_a_stuck_queue():
    """A compression header the body does not match once raised out of the flush: the message
    went back to the head of the queue, the bridge reconnected and failed again, for ever."""
    log = []
    r, producer = receiver(log)
    bad = FakeMessage({"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": 2.0}, "worker.heartbeat", log)
    bad.headers = {"compression": "application/x-gzip"}
    good = FakeMessage({"type": "worker-heartbeat", "hostname": "w2@h", "timestamp": 3.0}, "worker.heartbeat", log)
    r.pending = [(bad, 10.0), (good, 10.1)]
    r.progress.connect(0.0)
    r._flush(acks=True)
    (records,) = producer.batches
    dead = [orjson.loads(rec.value) for rec in records if rec.kind == "dead"]
    assert len(dead) == 1 and "cannot be decompressed" in dead[0]["reason"]
    assert sum(len(decode_pack(rec.value).entries) for rec in records if rec.kind == "worker") == 1
    assert ("ack", True) in log  # both acked: the bad one is in the dead-letter topic


class FakeConnection:
    def __init__(self, driver_type):
        self.transport = type("Transport", (), {"driver_type": driver_type})()


def test_the_queue_is_bound_to_the_clusters_event_exchange():
    """BRIDGE_EVENT_EXCHANGE is Celery's event_exchange: a topic exchange with a durable queue on
    AMQP, the fanout (pub/sub channel /{db}.<name>) on Redis; celeryev unless set."""
    queue, acks = receiver([])[0]._queue(FakeConnection("amqp"))
    assert (queue.exchange.name, queue.exchange.type, queue.routing_key, queue.durable, acks) == ("celeryev", "topic", "#", True, True)
    queue, acks = receiver([], bridge_event_exchange="ev.prod")[0]._queue(FakeConnection("amqp"))
    assert (queue.exchange.name, queue.exchange.type, queue.name, acks) == ("ev.prod", "topic", "celery-monitor.bridge.prod", True)
    queue, acks = receiver([], bridge_event_exchange="ev.prod")[0]._queue(FakeConnection("redis"))
    assert (queue.exchange.name, queue.exchange.type, acks) == ("ev.prod", "fanout", False)
