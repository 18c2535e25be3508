"""A bridge restart mid-stream re-packs the redelivered events differently; downstream nothing is
lost and nothing counted twice.

To make the redelivery certain (a kill -9 rarely lands between Kafka's ack and the broker ack),
Kafka is paused while the bridge waits for the acks of a large flush; the bridge is killed with its
packs on the wire and Kafka resumed: Kafka stores those packs, RabbitMQ redelivers their unacked messages
to the next bridge (another id, another batch size), which packs them again. Every event then sits
in Kafka twice, in packs of two bridges — and ClickHouse and the task records hold it once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.request
import uuid as uuidlib

import psutil
import pytest
from kafka import KafkaConsumer

from bridge.packs import partition_of
from devstack.pipeline import Pipeline, wait_for_tasks
from devstack import services
from streams.packs import decode_pack
from streams.topics import ensure_topics
from tests.integration.conftest import own_topics
from tests.integration.test_dead_letters import publish_raw

pytestmark = pytest.mark.serial  # the kill must land while the bridge waits for Kafka: alone (make test's -m serial)

TASKS = 300  # per phase: before the pause, while Kafka is paused, after the restart


def lifecycle(uuid: str, host: str, t: float) -> list[tuple[str, bytes]]:
    common = {"uuid": uuid, "hostname": host, "pid": 42}
    events = [
        {"type": "task-received", "clock": 1, "timestamp": t, "name": "repack.add", "args": "(1, 2)", "retries": 0, **common},
        {"type": "task-started", "clock": 2, "timestamp": t + 0.01, **common},
        {"type": "task-succeeded", "clock": 3, "timestamp": t + 0.02, "runtime": 0.01, "result": "3", **common},
    ]
    # as a prefork worker sends them: task.multi lists of varying length
    return [("task.multi", json.dumps(events[:1]).encode()), ("task.multi", json.dumps(events[1:]).encode())]


def packed_events(settings, uuids: set[str]) -> dict[tuple, list[tuple]]:
    """Event identity -> the packs holding it: (bridge, partition, offset, the pack's seqs)."""
    consumer = KafkaConsumer(
        settings.topic_task_events, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest", consumer_timeout_ms=2000, max_poll_records=5000,
    )  # fmt: skip
    where: dict[tuple, list[tuple]] = {}
    try:
        for message in consumer:
            pack = decode_pack(message.value)
            if pack.cluster != settings.cluster:
                continue
            for entry in pack.entries:
                e = entry.event
                if e["uuid"] in uuids:
                    assert partition_of(e["uuid"].encode(), settings.topic_partitions) == message.partition
                    identity = (e["type"], e["uuid"], e["hostname"], e["pid"], e["clock"], e["timestamp"])
                    seqs = frozenset(entry.seq for entry in pack.entries)
                    where.setdefault(identity, []).append((pack.bridge, message.partition, message.offset, seqs))
    finally:
        consumer.close()
    return where


def waiting_for_kafka(pid: int, deadline: float) -> None:
    """Return once the process has stopped using CPU for a while (blocked on Kafka's acks)."""
    proc = psutil.Process(pid)
    last, still = sum(proc.cpu_times()[:2]), 0
    while still < 5:
        assert time.monotonic() < deadline, "the bridge never went idle"
        time.sleep(0.2)
        now = sum(proc.cpu_times()[:2])
        still = still + 1 if now == last else 0
        last = now


def in_flight(metrics_addr: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    found = re.search(r"^bridge_in_flight_messages\{[^}]*\} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_restart_mid_stream_repacks_and_nothing_is_lost_or_doubled(stack, clickhouse_client):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    metrics_addr = f"127.0.0.1:{services.free_port()}"
    settings = pipeline.settings.replace(cluster=f"{base.cluster}-repack-{pipeline.run_id}", app_id=f"{base.app_id}-repack",
        bridge_metrics_addr=metrics_addr, bridge_kafka_timeout=30.0,
        bridge_tick_seconds=3600.0,  # no tick in flight when Kafka is paused: the flush is what waits for acks
        sink_group=f"repack-sink-{pipeline.run_id}",
    )  # fmt: skip
    # topics of its own: on the suite's shared topics a new streams app reads every earlier test's
    # events first, which a busy machine did not finish within the first phase's 90 s
    settings = own_topics(settings, pipeline.run_id)
    ensure_topics(settings)
    pipeline.settings = settings
    host = f"repack-{pipeline.run_id}@h"
    phases = [[str(uuidlib.uuid4()) for _ in range(TASKS)] for _ in range(3)]

    def publish(uuids: list[str]) -> None:
        now = time.time()
        publish_raw(settings, [body for i, u in enumerate(uuids) for body in lifecycle(u, host, now + i * 0.001)])

    tansu = stack["tansu"].pid()
    try:
        bridge = pipeline.start_bridge()
        pipeline.start_streams()
        publish(phases[0])
        wait_for_tasks(clickhouse_client, settings, phases[0], pipeline, timeout=90)

        bridge.signal(signal.SIGSTOP)  # phase 2 waits in its prefetch window: one large flush on resume
        publish(phases[1])
        os.kill(tansu, signal.SIGSTOP)
        try:
            bridge.signal(signal.SIGCONT)
            deadline = time.monotonic() + 20
            while in_flight(metrics_addr) == 0:  # the bridge holds a flush...
                assert time.monotonic() < deadline, bridge.tail()
                time.sleep(0.1)
            waiting_for_kafka(bridge.pid, deadline)  # ...packed and sent, now waiting for the acks
            bridge.signal(signal.SIGKILL)
            bridge.popen.wait(10)
        finally:
            os.kill(tansu, signal.SIGCONT)
        restarted = pipeline._proc("bridge", [sys.executable, "-m", "bridge"], {"BRIDGE_BATCH_SIZE": "3", "BRIDGE_METRICS_ADDR": "off"})
        pipeline.wait_for_log(restarted, "consuming Celery events", 30)
        publish(phases[2])

        uuids = [u for phase in phases for u in phase]
        rows = wait_for_tasks(clickhouse_client, settings, uuids, pipeline, timeout=180)
        where = packed_events(settings, set(uuids))
        # (the shared RabbitMQ's event exchange also carries other tests' Celery workers: ours only)
        db, ours = settings.clickhouse_database, "WHERE cluster = %(c)s AND uuid IN %(u)s"
        params = {"c": settings.cluster, "u": tuple(uuids)}
        # (a subquery: 18.16 answers a bare count() ... FINAL without merging the not-yet-merged parts)
        distinct_rows = clickhouse_client.execute(f"SELECT count() FROM (SELECT uuid FROM {db}.events FINAL {ours})", params)[0][0]
        doubled = clickhouse_client.execute(
            f"SELECT uuid, type, hostname, pid, clock, timestamp, count() AS n, groupArray(bridge), groupArray(seq) FROM {db}.events FINAL {ours} "
            "GROUP BY uuid, type, hostname, pid, clock, timestamp HAVING n > 1 LIMIT 5",
            params,
        )
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()

    expected = 3 * len(uuids)
    assert len(where) == expected, f"{expected - len(where)} events lost in Kafka"
    twice = {identity: packs for identity, packs in where.items() if len(packs) > 1}
    assert twice, "no event was redelivered: the kill did not land between Kafka and the broker ack"
    # re-packed: each copy in a pack of another bridge (its own sequence numbers), at another offset
    assert all(len({bridge for bridge, *_ in packs}) == len(packs) == 2 for packs in twice.values())
    assert all(len({offset for _, _, offset, _ in packs}) == 2 for packs in twice.values())
    assert distinct_rows == expected and not doubled, doubled  # each event once in ClickHouse
    assert all((r["state"], r["events_count"]) == ("SUCCEEDED", 3) for r in rows.values())  # and once in each task
    print(f"\nrestart mid-stream: {expected} events, {len(twice)} of them in Kafka twice, re-packed by the second bridge")
