"""The demo, for real: Celery worker -> broker -> bridge -> Tansu -> Faust -> ClickHouse.

Asserts the exact final record of every task the workload created, as read from ClickHouse.
"""

from __future__ import annotations


import pytest

from demo import workload
from devstack.pipeline import Pipeline, wait_for_tasks, wait_for_worker
from tests.integration.conftest import forget_kombu_keys

BROKERS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/14",
}


@pytest.mark.parametrize("transport", sorted(BROKERS))
def test_every_task_reaches_its_exact_final_state(stack, clickhouse_client, transport):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(broker_url=BROKERS[transport], cluster=f"{base.cluster}-{transport}-{pipeline.run_id}",
        app_id=f"{base.app_id}-{transport}",
    )
    pipeline.settings = settings
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        rows = wait_for_tasks(clickhouse_client, settings, list(expected), pipeline, timeout=120)
        pipeline.procs[-1].stop()
        worker = wait_for_worker(clickhouse_client, settings, pipeline.worker_hostname, "OFFLINE")
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        forget_kombu_keys(settings.broker_url)

    for uuid, fields in expected.items():
        row = rows[uuid]
        got = {k: row[k] for k in fields}
        assert got == fields, (uuid, got, fields)
        assert row["cluster"] == settings.cluster
        assert row["worker"] == pipeline.worker_hostname
        assert row["queued_at"] is not None, "task-sent must be captured (task_send_sent_event)"
        assert row["version"] == 2 * row["events_count"]  # not orphaned (migration 0006)
    assert (worker["state"], worker["offline_reason"]) == ("OFFLINE", "left")
    assert worker["processed"] >= len(expected) - 2

    db = settings.clickhouse_database
    (events_per_task,) = clickhouse_client.execute(
        f"SELECT count() FROM (SELECT DISTINCT uuid, type, hostname, pid, clock, timestamp FROM {db}.events "
        f"WHERE cluster = %(c)s AND uuid IN %(u)s)",
        {"c": settings.cluster, "u": tuple(expected)},
    )[0:1]
    # Every distinct event the engine merged is in the raw events table too.
    assert events_per_task[0] == sum(rows[u]["events_count"] for u in expected)
