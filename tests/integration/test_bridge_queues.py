"""`python -m bridge queues` and `python -m bridge forget`, with real bridges on the machine's RabbitMQ.

A retired cluster's queue (its bridge stopped, the queue durable) is listed from the pipeline's
history with its depth and no consumer; `forget` refuses a queue a live bridge still reads,
and deletes the retired one. Every queue created here is deleted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from kombu import Connection, Exchange, Queue

from bridge.lifecycle import inspect_queue
from devstack.pipeline import Pipeline, delete_queues, settings_env
from streams.clickhouse import ClickHouseWriter, connect
from streams.sink.rows import QUEUE_LENGTH_COLUMNS, queue_length_row

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"


def cli(settings, *argv: str) -> subprocess.CompletedProcess:
    env = settings_env(settings)
    return subprocess.run([sys.executable, "-m", "bridge", *argv], env=env, capture_output=True, text=True, timeout=60)


def depth(name: str) -> tuple[bool, int, int]:
    with Connection(RABBIT) as conn:
        return inspect_queue(conn, name)


def test_list_and_forget_a_retired_clusters_queue(stack, tmp_path):
    base = stack["settings"].replace(broker_url=RABBIT, bridge_queue_sample_seconds=0.0, bridge_metrics_addr="off")
    live = Pipeline(base.replace(cluster=f"{base.cluster}-live"), tmp_path / "logs")
    retired = Pipeline(base.replace(cluster=f"{base.cluster}-retired-{live.run_id}"), tmp_path / "logs")
    live_queue, retired_queue = live.settings.bridge_queue_name, retired.settings.bridge_queue_name
    task_queue = f"celery-tasks-{live.run_id}"
    try:
        retired_bridge = retired.start_bridge()  # declares its durable queue, as in production
        retired_bridge.stop()
        with Connection(RABBIT) as conn, conn.Producer() as producer:  # events keep arriving after it stopped
            for i in range(50):
                producer.publish({"type": "worker-heartbeat", "hostname": "h@x", "timestamp": time.time()},
                                 exchange=base.bridge_event_exchange, routing_key="worker.heartbeat", serializer="json")  # fmt: skip
        assert depth(retired_queue)[1] >= 50
        ClickHouseWriter(base, connect(base)).insert("queue_lengths", QUEUE_LENGTH_COLUMNS, [queue_length_row({
            "cluster": retired.settings.cluster, "queue": retired_queue, "role": "bridge", "transport": "amqp", "present": True,
            "messages": 0, "consumers": 1, "workers": None, "processes": None, "sampled_at": time.time() - 3600, "bridge": "b",
        })])  # fmt: skip: what the retired bridge sampled of its own queue while it ran
        live.start_bridge()

        text = cli(live.settings, "queues")
        assert text.returncode == 0 and retired_queue in text.stdout and "NO CONSUMER" in text.stdout, text
        listed = cli(live.settings, "queues", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = {row["queue"]: row for row in json.loads(listed.stdout)}
        assert (rows[live_queue]["consumers"], rows[live_queue]["configured"]) == (1, True), rows
        found = rows[retired_queue]  # from the history: not configured anywhere
        assert (found["present"], found["consumers"], found["configured"], found["source"]) == (True, 0, False, "history"), found
        assert found["messages"] >= 50 and found["status"].startswith("NO CONSUMER")

        refused = cli(live.settings, "forget", "--cluster", live.settings.cluster)
        assert refused.returncode == 1 and "refused" in refused.stderr and "consumer" in refused.stderr, refused
        assert depth(live_queue)[0]

        dry = cli(live.settings, "forget", "--cluster", retired.settings.cluster, "--dry-run")
        assert dry.returncode == 0 and "would delete" in dry.stdout, dry
        assert depth(retired_queue)[0]

        forgotten = cli(live.settings, "forget", "--cluster", retired.settings.cluster)
        assert forgotten.returncode == 0 and "deleted" in forgotten.stdout, forgotten
        assert depth(retired_queue) == (False, 0, 0)
        again = cli(live.settings, "forget", "--cluster", retired.settings.cluster)
        assert again.returncode == 0 and "nothing to forget" in again.stdout

        # A queue that is not a bridge queue (a Celery task queue whose workers are down) is refused.
        with Connection(RABBIT) as conn:  # as Celery declares a task queue: an exchange named like it
            Queue(task_queue, Exchange(task_queue, "direct"), routing_key=task_queue, channel=conn.default_channel).declare()
            with conn.Producer() as producer:
                producer.publish({"task": "x"}, exchange=task_queue, routing_key=task_queue, serializer="json")
        not_ours = cli(live.settings, "forget", "--cluster", "whatever", "--queue", task_queue)
        assert not_ours.returncode == 1 and "not a bridge queue" in not_ours.stderr, not_ours
        assert depth(task_queue)[0]
    finally:
        live.stop()
        retired.stop()
        delete_queues(RABBIT, [live_queue, retired_queue, task_queue])
    assert not depth(live_queue)[0] and not depth(retired_queue)[0] and not depth(task_queue)[0]
    with Connection(RABBIT) as conn:  # the task queue's exchange went with it
        with pytest.raises(conn.channel_errors):
            conn.default_channel.exchange_declare(exchange=task_queue, type="direct", passive=True)
