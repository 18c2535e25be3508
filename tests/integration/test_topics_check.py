"""`celery-monitor topics` and `check` against a real broker: what loses data is found (exit 1 and
why), what may change is fixed, what must not change is left and reported."""

from __future__ import annotations

import json
import subprocess
import uuid

from confluent_kafka.admin import NewTopic

from devstack.pipeline import ROOT
from streams.topics import admin_client, alter_configs, ensure_topics, plan_topics


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "celery-monitor"), *args], env=settings.environ(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_check_finds_what_loses_data_and_topics_fixes_what_it_may(stack):
    run = uuid.uuid4().hex[:6]
    suffix = f"-chk-{run}"
    settings = stack["settings"].replace(app_id=f"chk-{run}", sink_group=f"chk-sink-{run}", topic_alerts=f"celery.alerts{suffix}",
                                         topic_dead_letters=f"celery.dead-letters{suffix}")  # fmt: skip
    admin = admin_client(settings)
    # Fewer partitions than planned on one topic: created by hand before the pipeline's topics.
    admin.create_topics([NewTopic(settings.topic_dead_letters, 2, 1)])[settings.topic_dead_letters].result(15)
    assert ensure_topics(settings).created  # everything else, as planned
    changelog = f"{settings.app_id}-tasks-changelog"
    alter_configs(admin, {changelog: {"cleanup.policy": "delete", "retention.ms": "1000"}})
    admin.delete_topics([settings.topic_alerts])[settings.topic_alerts].result(15)

    broken = cli(settings, "check", "--format", "json", "--no-broker")
    assert broken.returncode == 1, broken.stdout
    errors = json.loads(broken.stdout)["errors"]
    assert any(settings.topic_alerts in e and "missing" in e for e in errors), errors
    assert any(changelog in e and "must be compacted" in e for e in errors), errors
    assert any(settings.topic_dead_letters in e and "2 partitions, 8 planned" in e for e in errors), errors

    fixed = cli(settings, "topics")
    assert fixed.returncode == 1, fixed.stderr  # the dead letters' partitions are wrong, and never changed by it
    assert f"topic {settings.topic_dead_letters}: has 2 partitions, 8 planned" in fixed.stderr
    assert f"topics created: {settings.topic_alerts}" in fixed.stdout
    assert f"topic {changelog}: set cleanup.policy=compact" in fixed.stdout

    after = cli(settings, "check", "--format", "json", "--no-broker")
    remaining = json.loads(after.stdout)["errors"]
    assert after.returncode == 1 and len(remaining) == 1 and "2 partitions, 8 planned" in remaining[0], remaining  # never repartitioned
    plan = {p.name: p for p in plan_topics(settings)}
    report = {t["name"]: t for t in json.loads(after.stdout)["kafka"]["topics"]}
    assert report[changelog]["config"]["cleanup.policy"] == "compact"
    assert report[settings.topic_task_events]["config"]["max.message.bytes"] == plan[settings.topic_task_events].config["max.message.bytes"]
