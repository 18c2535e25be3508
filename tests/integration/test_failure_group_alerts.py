"""failure-group alerts through the live pipeline: real Celery failures (ValueError('boom <n>')),
the group's first failure raises `new`, failures close after it nothing, a failure after the quiet
period `returned`, another message a `new` group of its own."""

from __future__ import annotations

import time

from demo.backlog import read_topic
from devstack.pipeline import Pipeline, wait_for_tasks
from streams.topics import ensure_topics
from tests.integration.conftest import forget_kombu_keys, own_topics

QUIET = 6.0
# Redis, on a database of its own: only this module's tasks reach this cluster (every bridge on the
# shared RabbitMQ hears every test's events; other tests use Redis dbs 0 and 9-14).
BROKER = "redis://127.0.0.1:6379/8"


def test_new_and_returned_failure_groups(stack, clickhouse_client):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-groups-{pipeline.run_id}", cluster=f"groups-{pipeline.run_id}",
                                         streams_metrics_addr="off", sink_group=f"groups-sink-{pipeline.run_id}", broker_url=BROKER)  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    try:
        pipeline.start_bridge()
        pipeline.start_streams(ALERT_GROUP_QUIET=str(QUIET))
        pipeline.start_celery_worker()
        client = pipeline.client
        first = [client.send_task("demo.fail", args=(f"boom {i}",)).id for i in range(3)]
        wait_for_tasks(clickhouse_client, settings, first, pipeline, timeout=90)
        time.sleep(QUIET + 2)
        later = [client.send_task("demo.fail", args=("boom 42",)).id, client.send_task("demo.fail", args=("disk full on /dev/sda1",)).id]
        wait_for_tasks(clickhouse_client, settings, later, pipeline, timeout=90)
        deadline = time.monotonic() + 30
        while True:
            alerts = [a for a in read_topic(settings, settings.topic_alerts) if a["cluster"] == settings.cluster and a["alert"] == "failure-group"]
            if len(alerts) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(1)
        got = sorted((a["fingerprint"], a["reason"]) for a in alerts)
        assert got == [("ValueError('boom <n>')", "new"), ("ValueError('boom <n>')", "returned"),
                       ("ValueError('disk full on /dev/sda<n>')", "new")], alerts  # fmt: skip
        returned = next(a for a in alerts if a["reason"] == "returned")
        assert returned["quiet_seconds"] >= QUIET and returned["last_uuid"] == later[0] and returned["name"] == "demo.fail"
        assert next(a for a in alerts if a["reason"] == "new" and "boom" in a["fingerprint"])["last_uuid"] in first
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        forget_kombu_keys(BROKER)
