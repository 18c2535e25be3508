"""A Celery worker killed with SIGKILL says nothing; the stream's watermark notices its silence.

Real RabbitMQ, real Celery workers (-E, heartbeat every 2 s), the bridge, a streams worker.
Issue 12: OFFLINE(heartbeat-expired) within 3 x freq of the kill and one worker-lost alert --
exactly one, also across a streams restart; the tasks it was running (acks_late or not) are
tagged orphaned with one task-orphaned alert each; the acks_late one, redelivered to another
worker, is no longer orphaned.
"""

from __future__ import annotations

import signal
import time

import pytest

from demo.backlog import read_topic, wait_for_record
from devstack.pipeline import Pipeline
from streams.topics import ensure_topics
from tests.integration.conftest import own_topics


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_sigkilled_celery_worker_goes_offline_and_orphans_its_tasks_once(stack, store):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-liveness-{pipeline.run_id}", cluster=f"liveness-{pipeline.run_id}",
        sink="off", streams_metrics_addr="off", store=store, data_dir=str(stack["run_dir"] / f"faust-liveness-{pipeline.run_id}"),
    )  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    host = pipeline.worker_hostname
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731

    def task_record(uuid, match, timeout):
        return wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and match(r), timeout, pipeline.check_alive)[0]

    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        celery = pipeline.start_celery_worker()
        alive, _ = wait_for_record(
            settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "HEARTBEAT", 90, pipeline.check_alive
        )
        freq = alive["freq"]
        plain = pipeline.client.send_task("demo.sleep", args=(30,)).id
        late = pipeline.client.send_task("demo.sleep_late", args=(30,)).id
        for uuid in (plain, late):
            task_record(uuid, lambda r: r["state"] == "STARTED" and r["worker"] == host, 60)

        celery.signal(signal.SIGKILL, group=True)  # the main process and its pool: no worker-offline event
        killed_at = time.time()
        offline, seen_at = wait_for_record(
            settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "OFFLINE", 6 * freq, pipeline.check_alive
        )
        assert offline["offline_reason"] == "heartbeat-expired"
        assert seen_at - killed_at <= 3 * freq, f"OFFLINE {seen_at - killed_at:.1f}s after the kill (freq {freq}s)"
        for uuid in (plain, late):
            orphan = task_record(uuid, lambda r: r["orphaned_at"] is not None, 30)
            assert (orphan["state"], orphan["worker"], orphan["orphaned_at"]) == ("STARTED", host, offline["expires_at"])

        # A graceful restart of the streams worker re-reads nothing it has not acked: no alert again.
        streams = next(p for p in pipeline.procs if p.name == "streams")
        streams.stop()
        restarted = pipeline.start_streams()
        pipeline.wait_for_log(restarted, "Worker ready", 90)
        time.sleep(3 * freq)  # the bridge's ticks keep moving the watermark meanwhile
        assert alerts(settings, "worker-lost", host) == 1
        assert alerts(settings, "task-orphaned", plain) == 1 and alerts(settings, "task-orphaned", late) == 1

        # The acks_late message went back to the queue when the killed worker's connection closed.
        other = f"other-{pipeline.run_id}@{host.split('@')[1]}"
        pipeline.start_celery_worker(hostname=other)
        redelivered = task_record(late, lambda r: r["worker"] == other, 60)
        assert redelivered["orphaned_at"] is None and redelivered["state"] in ("RECEIVED", "STARTED")
        still = task_record(plain, lambda r: r["orphaned_at"] is not None, 60)  # acked at start: lost with the worker
        assert still["worker"] == host
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()


def alerts(settings, kind: str, subject: str) -> int:
    """How many ``kind`` alerts of this test's cluster name ``subject`` (a hostname or a task uuid)."""
    return sum(
        1 for a in read_topic(settings, settings.topic_alerts)
        if a["alert"] == kind and a["cluster"] == settings.cluster and subject in (a.get("hostname"), a["key"])
    )  # fmt: skip


def _liveness_pipeline(stack, name: str):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-{name}-{pipeline.run_id}", cluster=f"{name}-{pipeline.run_id}",
                                         sink="off", streams_metrics_addr="off")  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    return pipeline, settings


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_warm_shutdown_is_not_a_lost_worker(stack, pool):
    """Issue 19, item 1: SIGTERM to a worker running a task (what every deploy does). Celery
    sends worker-offline at once, then the task's task-succeeded when the pool drains: the worker
    is OFFLINE(left), never lost; the task SUCCEEDED, never orphaned."""
    pipeline, settings = _liveness_pipeline(stack, f"warm-{pool}")
    host = pipeline.worker_hostname
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        celery = pipeline.start_celery_worker(extra_args=("-P", pool))
        alive, _ = wait_for_record(settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "HEARTBEAT", 90,
                                   pipeline.check_alive)  # fmt: skip
        freq = alive["freq"]
        uuid = pipeline.client.send_task("demo.sleep", args=(6,)).id
        wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["state"] == "STARTED", 60, pipeline.check_alive)
        celery.signal(signal.SIGTERM)  # the main process only: a warm shutdown, the pool drains its task
        done, _ = wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["state"] == "SUCCEEDED", 60,
                                  pipeline.check_alive)  # fmt: skip
        assert done["result"] == "6" and done["orphaned_at"] is None
        assert celery.popen.wait(30) == 0
        time.sleep(6 * freq)  # far past 2 x freq: the bridge's ticks move the watermark meanwhile
        states = [r for r in read_topic(settings, settings.topic_worker_states) if mine(r)]
        events_after_offline = [r for r in states if r["offline_at"] is not None]
        assert events_after_offline, "no worker-offline seen"
        assert (states[-1]["state"], states[-1]["offline_reason"]) == ("OFFLINE", "left")
        assert "heartbeat-expired" not in {r["offline_reason"] for r in states}
        assert alerts(settings, "worker-lost", host) == 0
        assert alerts(settings, "task-orphaned", uuid) == 0
        final = [r for r in read_topic(settings, settings.topic_task_states) if r["uuid"] == uuid][-1]
        assert (final["state"], final["orphaned_at"]) == ("SUCCEEDED", None)
        # the path under test happened: Celery sent the task's end after its worker-offline
        received = {}
        for topic in (settings.topic_task_events, settings.topic_worker_events):
            for pack in read_topic(settings, topic):
                for entry in pack.get("events", ()):
                    event = entry["event"]
                    if (event.get("type"), event.get("uuid") or event.get("hostname")) in (("worker-offline", host), ("task-succeeded", uuid)):
                        received[event["type"]] = entry["received_at"]
        assert received["task-succeeded"] > received["worker-offline"], received
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()


def test_a_worker_without_heartbeats_is_not_lost_after_its_task_events(stack):
    """Issue 19, item 2: ``celery worker --without-heartbeat`` sends task events only. It is ONLINE
    (Celery's freq = 60 s rule: alive 120 s after its last event), not lost 4 s later."""
    pipeline, settings = _liveness_pipeline(stack, "noheart")
    host = pipeline.worker_hostname
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker(extra_args=("--without-heartbeat",))
        uuid = pipeline.client.send_task("demo.sleep", args=(12,)).id
        wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["state"] == "STARTED", 60, pipeline.check_alive)
        online, _ = wait_for_record(settings, settings.topic_worker_states, mine, 30, pipeline.check_alive)
        assert online["state"] == "ONLINE" and online["heartbeat_at"] is None
        assert online["expires_at"] == pytest.approx(online["seen_at"] + 120)
        time.sleep(10)  # the old 2 s rule declared it lost 4 s after the task-started; the task still runs
        states = [r for r in read_topic(settings, settings.topic_worker_states) if mine(r)]
        assert [r["state"] for r in states if r["state"] == "OFFLINE"] == []
        assert alerts(settings, "worker-lost", host) == 0 and alerts(settings, "task-orphaned", uuid) == 0
        done, _ = wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["state"] == "SUCCEEDED", 60,
                                  pipeline.check_alive)  # fmt: skip
        assert done["orphaned_at"] is None
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()


def test_a_soft_shutdown_is_not_a_lost_worker(stack):
    """Issue 19, item 1: Celery >= 5.5's soft shutdown (worker_soft_shutdown_timeout, SIGQUIT):
    worker-offline, then after the soft period the running tasks' task-cancelled, from the same
    process. The worker is OFFLINE(left), never lost; its tasks are never orphaned."""
    pipeline, settings = _liveness_pipeline(stack, "soft")
    host = pipeline.worker_hostname
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        celery = pipeline.start_celery_worker(extra_env={"DEMO_SOFT_SHUTDOWN_TIMEOUT": "2"})
        alive, _ = wait_for_record(settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "HEARTBEAT", 90,
                                   pipeline.check_alive)  # fmt: skip
        freq = alive["freq"]
        plain = pipeline.client.send_task("demo.sleep", args=(60,)).id
        late = pipeline.client.send_task("demo.sleep_late", args=(60,)).id
        for uuid in (plain, late):
            wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["state"] == "STARTED", 60, pipeline.check_alive)
        celery.signal(signal.SIGQUIT)  # soft shutdown: 2 s, then the running tasks are cancelled
        for uuid in (plain, late):
            wait_for_record(settings, settings.topic_task_states, lambda r: r["uuid"] == uuid and r["cancels"] >= 1, 60, pipeline.check_alive)
        celery.popen.wait(30)
        time.sleep(6 * freq)
        states = [r for r in read_topic(settings, settings.topic_worker_states) if mine(r)]
        assert (states[-1]["state"], states[-1]["offline_reason"]) == ("OFFLINE", "left")
        assert "heartbeat-expired" not in {r["offline_reason"] for r in states}
        assert alerts(settings, "worker-lost", host) == 0
        assert alerts(settings, "task-orphaned", plain) == 0 and alerts(settings, "task-orphaned", late) == 0
        records = read_topic(settings, settings.topic_task_states)
        for uuid in (plain, late):
            final = [r for r in records if r["uuid"] == uuid][-1]
            assert (final["state"], final["orphaned_at"], final["cancels"]) == ("RETRY", None, 1)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
