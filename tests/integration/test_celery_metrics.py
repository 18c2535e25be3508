"""celery-exporter's metrics from a streams worker, scraped during a real Celery workload and
compared with ClickHouse: every task counter equals the distinct events of its type, before and
after a streams restart (and after more work once restarted).

On a Redis database of its own: the machine's RabbitMQ is shared, and a bridge queue bound to
``celeryev`` with ``#`` also hears every other Celery worker on that vhost (other tests' tasks
whose first events it missed have no name, which the exporter does not count), so exact totals
need a broker only this test's worker publishes to.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter

import redis as redis_client
from prometheus_client.parser import text_string_to_metric_families

from demo import workload
from devstack.pipeline import Pipeline, PipelineError, wait_for_tasks
from devstack import services

BROKER = "redis://127.0.0.1:6379/11"

COUNTERS = {
    "task-sent": "celery_task_sent_total",
    "task-received": "celery_task_received_total",
    "task-started": "celery_task_started_total",
    "task-succeeded": "celery_task_succeeded_total",
    "task-failed": "celery_task_failed_total",
    "task-rejected": "celery_task_rejected_total",
    "task-revoked": "celery_task_revoked_total",
    "task-retried": "celery_task_retried_total",
}


def scrape(address: str, cluster: str) -> tuple[Counter, list]:
    """Sum of every sample per name for ``cluster``, and the samples themselves."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    totals, kept = Counter(), []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("cluster") == cluster:
                totals[sample.name] += sample.value
                kept.append(sample)
    return totals, kept


def clickhouse_counts(client, settings) -> Counter:
    rows = client.execute(
        f"SELECT type, count() FROM (SELECT DISTINCT uuid, type, hostname, pid, clock, timestamp "
        f"FROM {settings.clickhouse_database}.events WHERE cluster = %(c)s AND uuid IN ("
        f"  SELECT uuid FROM {settings.clickhouse_database}.events WHERE cluster = %(c)s"
        f"  AND type IN ('task-sent', 'task-received') AND name != '')) GROUP BY type",  # counted once named
        {"c": settings.cluster},
    )
    return Counter({COUNTERS[t]: n for t, n in rows if t in COUNTERS})


def wait_equal(addresses, client, settings, pipeline, timeout=90.0) -> tuple[Counter, list]:
    """Until the counters summed over every streams worker's endpoint equal ClickHouse's counts."""
    addresses = [addresses] if isinstance(addresses, str) else addresses
    deadline = time.monotonic() + timeout
    while True:
        pipeline.check_alive()
        metrics, samples = Counter(), []
        for address in addresses:
            try:
                one, kept = scrape(address, settings.cluster)
            except OSError:
                continue
            metrics.update(one)
            samples.extend(kept)
        expected = clickhouse_counts(client, settings)
        got = Counter({name: metrics[name] for name in COUNTERS.values() if metrics[name]})
        if expected and got == expected:
            return metrics, samples
        if time.monotonic() > deadline:
            raise PipelineError(f"metrics never matched ClickHouse:\n metrics    {dict(got)}\n clickhouse {dict(expected)}")
        time.sleep(0.5)


def test_metrics_equal_clickhouse_across_a_streams_restart(stack, clickhouse_client):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    address = f"127.0.0.1:{services.free_port()}"
    settings = pipeline.settings.replace(broker_url=BROKER, cluster=f"{base.cluster}-metrics-{pipeline.run_id}", app_id=f"{base.app_id}-metrics",
        streams_metrics_addr=address, bridge_metrics_addr=f"127.0.0.1:{services.free_port()}", bridge_queue_sample_seconds=1.0,
    )  # fmt: skip
    pipeline.settings = settings
    redis = redis_client.Redis.from_url(BROKER)
    keys_before = set(redis.keys("*"))
    try:
        pipeline.start_bridge()
        streams = pipeline.start_streams()
        pipeline.start_celery_worker()
        expected = workload.submit(pipeline.client, pipeline.worker_hostname)
        wait_for_tasks(clickhouse_client, settings, list(expected), pipeline, timeout=120)
        metrics, samples = wait_equal(address, clickhouse_client, settings, pipeline)
        assert metrics["celery_task_runtime_count"] == metrics["celery_task_succeeded_total"] > 0
        assert metrics["celery_task_queue_wait_time_count"] > 0
        host = pipeline.worker_hostname.split("@", 1)[1]
        assert any(s.name == "celery_worker_up" and s.labels["hostname"] == host and s.value == 1 for s in samples)
        queue = {s.name: s.value for s in samples if s.labels.get("queue_name") == pipeline.task_queue and "task" not in s.name}
        assert (queue.get("celery_active_worker_count"), queue.get("celery_active_process_count")) == (1, 2), queue
        assert "celery_active_consumer_count" not in queue  # Redis cannot tell
        assert "celery_queue_length" in queue
        failed = {s.labels["exception"] for s in samples if s.name == "celery_task_failed_total" and s.value}
        assert {"ValueError", "RuntimeError"} <= failed, failed
        partitions = {s.labels["partition"] for s in samples if s.name == "celery_task_received_total"}
        assert len(partitions) > 1

        streams.stop()  # graceful: the counts were persisted batch by batch
        pipeline.start_streams()
        after_restart, _ = wait_equal(address, clickhouse_client, settings, pipeline)
        assert {k: v for k, v in after_restart.items() if k in COUNTERS.values()} == {
            k: v for k, v in metrics.items() if k in COUNTERS.values()
        }

        more = workload.submit(pipeline.client, pipeline.worker_hostname)  # counted on top of the restored counts
        wait_for_tasks(clickhouse_client, settings, list(more), pipeline, timeout=120)
        final, _ = wait_equal(address, clickhouse_client, settings, pipeline)
        assert final["celery_task_received_total"] > after_restart["celery_task_received_total"]

        second = f"127.0.0.1:{services.free_port()}"  # a second worker takes half the partitions
        pipeline.start_streams("streams-2", STREAMS_METRICS_ADDR=second)
        deadline = time.monotonic() + 90
        while True:
            shared, samples = wait_equal([address, second], clickhouse_client, settings, pipeline)
            owners: dict[str, set] = {}  # from one scrape of each: a partition may move between scrapes
            for one in (address, second):
                try:
                    exported = scrape(one, settings.cluster)[1]
                except OSError:  # the second worker is still starting
                    exported = []
                for sample in exported:
                    if sample.name == "celery_task_sent_total":
                        owners.setdefault(sample.labels["partition"], set()).add(one)
            if len(set().union(*owners.values())) == 2 and all(len(o) == 1 for o in owners.values()):
                break  # each partition exported by exactly one of the two, and both export some
            assert time.monotonic() < deadline, owners
            time.sleep(0.5)
        assert {k: v for k, v in shared.items() if k in COUNTERS.values()} == {k: v for k, v in final.items() if k in COUNTERS.values()}
        print("metrics = ClickHouse distinct events:", {k: int(v) for k, v in sorted(final.items()) if k in COUNTERS.values()})
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        for key in set(redis.keys("*")) - keys_before:  # kombu's bookkeeping this run created in its database
            redis.delete(key)
