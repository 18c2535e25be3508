"""Kafka unavailable (the broker process paused with SIGSTOP): the bridge stops consuming instead of
growing memory, RabbitMQ keeps the events, and after SIGCONT every event arrives."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request

from devstack.pipeline import Pipeline
from devstack import services
from tests.integration.test_bridge_at_least_once import EVENTS_PER_TASK, wait_for_identities

N_TASKS = 2000
PAUSE_SECONDS = 12



def test_kafka_down_means_back_pressure_not_memory_or_loss(stack):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    metrics_addr = f"127.0.0.1:{services.free_port()}"
    settings = pipeline.settings.replace(cluster=f"{base.cluster}-down-{pipeline.run_id}", bridge_kafka_timeout=4.0, bridge_metrics_addr=metrics_addr
    )
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
                rss.append(services.rss_mb(bridge.pid))
                assert bridge.alive(), bridge.tail()
                time.sleep(0.5)
            publisher.join()
            health = urllib.request.urlopen(f"http://{metrics_addr}/healthz", timeout=5).status  # waiting is not stuck
        finally:
            os.kill(tansu_pid, signal.SIGCONT)
        seen, records, _ = wait_for_identities(settings, uuids, N_TASKS * EVENTS_PER_TASK)
        log = bridge.log_text()
        metrics = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
    assert len(seen) == N_TASKS * EVENTS_PER_TASK, f"{N_TASKS * EVENTS_PER_TASK - len(seen)} events lost"
    assert "Kafka unavailable" in log  # it said so, with what to check
    assert health == 200
    errors = re.search(r'bridge_kafka_errors_total\{cluster="[^"]+"\} (\d+)', metrics)
    assert errors and int(errors.group(1)) >= 1, metrics
    out = re.search(r'bridge_events_out_total\{cluster="[^"]+",topic="celery.task-events.v2"\} (\d+)', metrics)
    assert out and int(out.group(1)) >= N_TASKS * EVENTS_PER_TASK
    packs = re.search(r'bridge_records_out_total\{cluster="[^"]+",topic="celery.task-events.v2"\} (\d+)', metrics)
    assert packs and 0 < int(packs.group(1)) < int(out.group(1))  # several events per record
    assert max(rss) < 150, f"bridge RSS grew to {max(rss):.0f} MB while Kafka was down"
    print(f"\nKafka paused {PAUSE_SECONDS}s: bridge RSS max {max(rss):.0f} MB, {len(seen)} events, {records - len(seen)} duplicates")
