"""One bridge process serving two Celery clusters (RabbitMQ and Redis) from a cluster file:
every pack carries its own cluster, and worker events sit on the partition of their own
cluster's worker key. The Redis cluster's Celery apps send events on an event_exchange of their
own, which the file names for that cluster alone."""

from __future__ import annotations

import sys
import time

from kafka import KafkaConsumer

from bridge.packs import partition_of
from devstack.pipeline import Pipeline
from devstack.private import forget_event_exchange
from streams.packs import decode_pack
from tests.integration.test_bridge_at_least_once import EVENTS_PER_TASK, wait_for_identities

N_TASKS = 20


def test_two_clusters_in_one_bridge(stack, tmp_path):
    base = stack["settings"]
    rabbit = Pipeline(base, stack["run_dir"] / "logs")
    redis = Pipeline(base, stack["run_dir"] / "logs")
    rabbit.settings = rabbit.settings.replace(cluster=f"rmq-{rabbit.run_id}")
    redis.settings = redis.settings.replace(cluster=f"rds-{redis.run_id}", broker_url="redis://127.0.0.1:6379/15",
                                            bridge_event_exchange=f"{base.bridge_event_exchange}.rds-{redis.run_id}")  # fmt: skip
    config = tmp_path / "clusters.toml"
    config.write_text(
        f'[clusters.{rabbit.settings.cluster}]\nbroker = "{rabbit.settings.broker_url}"\n\n'
        f'[clusters.{redis.settings.cluster}]\nbroker = "{redis.settings.broker_url}"\nevent_exchange = "{redis.settings.bridge_event_exchange}"\n'
    )
    try:
        bridge = rabbit._proc("bridge", [sys.executable, "-m", "bridge", "--config", str(config)])
        for cluster in (rabbit.settings.cluster, redis.settings.cluster):
            rabbit.wait_for_log(bridge, f"cluster={cluster}", timeout=30)
        rabbit.start_celery_worker()
        redis.start_celery_worker()
        uuids = {
            name: {p.client.send_task("demo.add", args=(i, i)).id for i in range(N_TASKS)}
            for name, p in (("rabbit", rabbit), ("redis", redis))
        }
        seen = {name: wait_for_identities(p.settings, uuids[name], N_TASKS * EVENTS_PER_TASK)[0] for name, p in (("rabbit", rabbit), ("redis", redis))}
        wanted = {(p.settings.cluster, f"{p.settings.cluster}/{p.worker_hostname}", p.worker_hostname) for p in (rabbit, redis)}
        worker_keys: set[tuple] = set()
        consumer = KafkaConsumer(base.topic_worker_events, bootstrap_servers=base.kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
        deadline = time.monotonic() + 30  # heartbeats never stop, so read until found (or time is up)
        while not wanted <= worker_keys and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for message in records:
                    pack = decode_pack(message.value)
                    for entry in pack.entries:
                        key = f"{pack.cluster}/{entry.event['hostname']}"
                        assert partition_of(key.encode(), base.topic_partitions) == message.partition
                        worker_keys.add((pack.cluster, key, entry.event["hostname"]))
        consumer.close()
    finally:
        redis.stop()
        rabbit.stop()
        rabbit.cleanup_broker()
        redis.cleanup_broker()
        forget_event_exchange(redis.settings.bridge_event_exchange)
    assert len(seen["rabbit"]) == len(seen["redis"]) == N_TASKS * EVENTS_PER_TASK
    assert wanted <= worker_keys, sorted(wanted - worker_keys)
