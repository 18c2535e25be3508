"""Kafka unavailable (the broker process paused with SIGSTOP): the bridge stops consuming instead of
growing memory, RabbitMQ keeps the events, and after SIGCONT every event arrives."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

from demo.pipeline import Pipeline
from tests.integration.test_bridge_at_least_once import EVENTS_PER_TASK, identities_in_kafka

N_TASKS = 2000
PAUSE_SECONDS = 12


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_kafka_down_means_back_pressure_not_memory_or_loss(stack):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = dataclasses.replace(pipeline.settings, cluster=f"{base.cluster}-down-{pipeline.run_id}", bridge_kafka_timeout=4.0)
    pipeline.settings = settings
    tansu_pid = stack["tansu"].pid()
    rss = []
    try:
        bridge = pipeline.start_bridge()
        pipeline.start_celery_worker()
        uuids: set[str] = set()
        publisher = threading.Thread(target=lambda: uuids.update(pipeline.client.send_task("demo.add", args=(i, i)).id for i in range(N_TASKS)))
        os.kill(tansu_pid, signal.SIGSTOP)
        try:
            publisher.start()
            deadline = time.monotonic() + PAUSE_SECONDS
            while time.monotonic() < deadline:
                rss.append(rss_mb(bridge.pid))
                assert bridge.alive(), bridge.tail()
                time.sleep(0.5)
            publisher.join()
        finally:
            os.kill(tansu_pid, signal.SIGCONT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen, records, _ = identities_in_kafka(settings, uuids)
            if len(seen) >= N_TASKS * EVENTS_PER_TASK:
                break
            time.sleep(2)
        log = bridge.log_text()
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
    assert len(seen) == N_TASKS * EVENTS_PER_TASK, f"{N_TASKS * EVENTS_PER_TASK - len(seen)} events lost"
    assert "Kafka unavailable" in log  # it said so, with what to check
    assert max(rss) < 150, f"bridge RSS grew to {max(rss):.0f} MB while Kafka was down"
    print(f"\nKafka paused {PAUSE_SECONDS}s: bridge RSS max {max(rss):.0f} MB, {len(seen)} events, {records - len(seen)} duplicates")
