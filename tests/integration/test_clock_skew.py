"""A real Celery worker whose clock runs 20 s behind, beside a normal one, through the live pipeline.

Issue 12: liveness compares receive times with the stream's watermark, never a worker's clock
with the monitor's. For a minute neither worker is ever published OFFLINE and no worker-lost alert
is raised; both end HEARTBEAT in ClickHouse, the skewed one with its skew (and one clock-drift
alert, the threshold being 16 s as Celery's own drift warning).
"""

from __future__ import annotations

import shutil
import time

import pytest

from demo.backlog import read_topic
from devstack.pipeline import Pipeline, wait_for_worker
from streams.topics import ensure_topics
from tests.integration.conftest import own_topics

RUN_SECONDS = 30.0  # 7x the expiry of a 2 s heartbeat, with a clock 20 s behind
SKEW = -20.0


def test_a_worker_whose_clock_is_behind_is_never_lost(stack, clickhouse_client):
    assert shutil.which("faketime"), "Debian's faketime is needed: make faketime (make test installs it)"
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-skew-{pipeline.run_id}", cluster=f"skew-{pipeline.run_id}",
        streams_metrics_addr="off", sink_group=f"skew-sink-{pipeline.run_id}",
    )  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    host = pipeline.worker_hostname.split("@")[1]
    normal, skewed = f"normal-{pipeline.run_id}@{host}", f"skewed-{pipeline.run_id}@{host}"
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker(hostname=normal)
        pipeline.start_celery_worker(hostname=skewed, clock_offset=SKEW)
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:  # a little work for both, heartbeats all along
            pipeline.client.send_task("demo.add", args=(1, 2))
            pipeline.check_alive()
            time.sleep(0.5)

        published = [r for r in read_topic(settings, settings.topic_worker_states) if r["cluster"] == settings.cluster]
        for hostname in (normal, skewed):
            mine = [r for r in published if r["hostname"] == hostname]
            assert mine, f"no record of {hostname}"
            assert not [r for r in mine if r["state"] == "OFFLINE"], f"{hostname} was published OFFLINE"
        alerts = [a for a in read_topic(settings, settings.topic_alerts) if a["cluster"] == settings.cluster]
        assert not [a for a in alerts if a["alert"] == "worker-lost" and a["hostname"] in (normal, skewed)]
        drift = [a for a in alerts if a["alert"] == "clock-drift" and a["hostname"] in (normal, skewed)]
        assert [a["hostname"] for a in drift] == [skewed], drift

        rows = {h: wait_for_worker(clickhouse_client, settings, h, "HEARTBEAT", 30) for h in (normal, skewed)}
        assert rows[skewed]["skew"] == pytest.approx(SKEW, abs=2.0)
        assert abs(rows[normal]["skew"]) < 2.0
        assert rows[skewed]["heartbeat_at"] < rows[skewed]["seen_at"] - 15  # its own clock, 20 s behind ours
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
