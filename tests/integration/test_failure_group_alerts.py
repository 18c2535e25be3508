"""failure-group and task-slow alerts through the live pipeline: real Celery failures
(ValueError('boom <n>')), the group's first failure raises `new`, failures close after it nothing,
a failure after the quiet period `returned`, another message a `new` group of its own; a task
slower than ALERT_SLOW_RUNTIME `task-slow`. Then `celery-monitor notify` delivers them to a real
local webhook server, once, across a kill -9."""

from __future__ import annotations

import signal
import sys
import time

from demo.backlog import read_topic
from devstack.pipeline import Pipeline, Proc, settings_env, wait_for_tasks
from devstack.services import free_port
from streams.topics import ensure_topics
from tests.integration.conftest import forget_kombu_keys, own_topics
from tests.integration.test_notify import Hook, hook, wait_until  # noqa: F401 (hook: the webhook server fixture)

QUIET = 6.0
# Redis, on a database of its own: only this module's tasks reach this cluster (every bridge on the
# shared RabbitMQ hears every test's events; other tests use Redis dbs 0 and 9-14).
BROKER = "redis://127.0.0.1:6379/8"


def test_new_and_returned_failure_groups_and_slow_tasks_delivered_once(stack, clickhouse_client, hook, tmp_path):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-groups-{pipeline.run_id}", cluster=f"groups-{pipeline.run_id}",
                                         streams_metrics_addr="off", sink_group=f"groups-sink-{pipeline.run_id}", broker_url=BROKER)  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    try:
        pipeline.start_bridge()
        pipeline.start_streams(ALERT_GROUP_QUIET=str(QUIET), ALERT_SLOW_RUNTIME="1.0")
        pipeline.start_celery_worker()
        client = pipeline.client
        first = [client.send_task("demo.fail", args=(f"boom {i}",)).id for i in range(3)]
        slow, fast = client.send_task("demo.sleep", args=(1.2,)).id, client.send_task("demo.sleep", args=(0.1,)).id
        wait_for_tasks(clickhouse_client, settings, first + [slow, fast], pipeline, timeout=90)
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
        (slow_alert,) = [a for a in read_topic(settings, settings.topic_alerts) if a["cluster"] == settings.cluster and a["alert"] == "task-slow"]
        assert slow_alert["key"] == slow and slow_alert["name"] == "demo.sleep" and slow_alert["runtime"] >= 1.2

        rules = tmp_path / "rules.toml"
        rules.write_text(f"""
[[rule]]
name = "groups"
alerts = ["failure-group"]
dedupe_seconds = 0                # new and returned share the group's key
urls = ["json://127.0.0.1:{hook}/groups"]

[[rule]]
name = "slow"
alerts = ["task-slow"]
tasks = ["demo.*"]
min_runtime = 1
urls = ["json://127.0.0.1:{hook}/slow"]
""")
        env = {**settings_env(settings), "NOTIFY_RULES": str(rules), "NOTIFY_UI_URL": "https://monitor.example",
               "NOTIFY_GROUP": f"notify-{pipeline.run_id}", "NOTIFY_METRICS_ADDR": "off"}  # fmt: skip
        log = stack["run_dir"] / "logs" / f"notify-{pipeline.run_id}.log"
        notify = Proc("notify", [sys.executable, "-m", "streams", "notify"], env, log).start()
        try:
            wait_until(lambda: len(Hook.received) >= 4, 60, f"4 messages (got {len(Hook.received)}): {notify.tail()}")
            time.sleep(3)  # commits follow deliveries; anything more would have come by now
            notify.signal(signal.SIGKILL)
            notify.popen.wait(10)
            notify = Proc("notify", [sys.executable, "-m", "streams", "notify"], env, log.with_suffix(".2.log")).start()
            wait_until(lambda: "notify started" in notify.log_text(), 30, "the restarted notify")
            time.sleep(5)  # a restarted notify delivers nothing again
        finally:
            notify.stop()
        assert sorted(m["path"] for m in Hook.received) == ["/groups"] * 3 + ["/slow"]
        assert sorted(m["title"] for m in Hook.received if m["path"] == "/groups") == [f"[{settings.cluster}] failure-group: demo.fail"] * 3
        (slow_message,) = [m for m in Hook.received if m["path"] == "/slow"]
        assert f"https://monitor.example/task?cluster={settings.cluster}&uuid={slow}" in slow_message["message"]
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
        forget_kombu_keys(BROKER)
