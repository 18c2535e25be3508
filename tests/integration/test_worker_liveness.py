"""A Celery worker killed with SIGKILL says nothing; its heartbeats stop and the timer notices.

Real RabbitMQ, a real Celery worker (-E, heartbeat every 2 s), the bridge, a streams worker.
Goal (issue): OFFLINE(heartbeat-expired) within 3 x freq of the kill, and a worker-lost alert.
"""

from __future__ import annotations

import dataclasses
import signal
import time

from demo.backlog import wait_for_record
from demo.pipeline import Pipeline
from streams.topics import ensure_topics


def test_a_sigkilled_celery_worker_goes_offline_within_three_heartbeats(stack):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = dataclasses.replace(
        pipeline.settings, app_id=f"{base.app_id}-liveness-{pipeline.run_id}", cluster=f"liveness-{pipeline.run_id}",
        sink="off", streams_metrics_addr="off",
    )  # fmt: skip
    pipeline.settings = settings
    ensure_topics(settings)
    host = pipeline.worker_hostname
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        celery = pipeline.start_celery_worker()
        alive, _ = wait_for_record(
            settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "HEARTBEAT", 90, pipeline.check_alive
        )
        freq = alive["freq"]
        celery.signal(signal.SIGKILL, group=True)  # the main process and its pool: no worker-offline event
        killed_at = time.time()
        offline, seen_at = wait_for_record(
            settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "OFFLINE", 6 * freq, pipeline.check_alive
        )
        assert offline["offline_reason"] == "heartbeat-expired"
        assert seen_at - killed_at <= 3 * freq, f"OFFLINE {seen_at - killed_at:.1f}s after the kill (freq {freq}s)"
        lost, _ = wait_for_record(
            settings, settings.topic_alerts, lambda r: r["alert"] == "worker-lost" and r["hostname"] == host and r["cluster"] == settings.cluster, 10
        )
        assert lost["key"] == f"{settings.cluster}/{host}"
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
