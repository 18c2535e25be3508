"""A task that retries 5,000 times halts nothing (issue 19, item 3), for real.

A real Celery worker runs ``demo.poll``: one task id retried at once, without limit (as
celery.chord_unlock on a backend without native chords), 5,000 times, next to 150 ordinary
tasks, through bridge -> Kafka (Tansu) -> streams -> ClickHouse. Before issue 19 the task's state
passed Kafka's 1 MB at ~3,700 attempts and its partition stopped; now: RECOVERED with
retries=5000, every ordinary task SUCCEEDED, the state bounded (measured on the changelog).
5,000 attempts are well past that limit and ten times TASK_ENTRIES_MAX (512); the engine's own
test folds 10,000 (tests/unit/engine/test_bounded_state.py). It was 10,000 here too: 170-200 s of
make test on 2 cores, for the same proof.
"""

from __future__ import annotations

import time

from demo.backlog import read_topic
from devstack.pipeline import Pipeline, wait_for_tasks
from streams.topics import ensure_topics
from tests.integration.conftest import own_topics

ATTEMPTS = 5_000


def test_one_task_retried_5000_times_next_to_ordinary_tasks(stack, clickhouse_client):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(app_id=f"{base.app_id}-poll-{pipeline.run_id}", cluster=f"poll-{pipeline.run_id}")
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    try:
        pipeline.start_bridge()
        pipeline.start_streams()
        pipeline.start_celery_worker()
        began = time.monotonic()
        poll = pipeline.client.send_task("demo.poll", args=(ATTEMPTS,)).id
        ordinary = []
        for _ in range(15):  # ordinary tasks all along the poll's life
            ordinary += [pipeline.client.send_task("demo.add", args=(i, 1)).id for i in range(10)]
            time.sleep(1.0)
        rows = wait_for_tasks(clickhouse_client, settings, [poll, *ordinary], pipeline, timeout=900)
        elapsed = time.monotonic() - began
        changelog = f"{settings.app_id}-tasks-changelog"
        import orjson

        sizes = [len(orjson.dumps(s)) for s in read_topic(settings, changelog, timeout=120) if s and s.get("uuid") == poll]
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()

    row = rows[poll]
    db = settings.clickhouse_database
    ((distinct,),) = clickhouse_client.execute(
        f"SELECT count() FROM (SELECT DISTINCT type, hostname, pid, clock, timestamp FROM {db}.events "
        f"WHERE cluster = %(c)s AND uuid = %(u)s)", {"c": settings.cluster, "u": poll})  # fmt: skip
    print(f"\n{ATTEMPTS} attempts: {row['events_count']} events, {elapsed:.0f} s to ClickHouse; largest changelog state "
          f"{max(sizes):,} bytes over {len(sizes)} writes")  # fmt: skip
    assert (row["state"], row["retries"], row["name"]) == ("RECOVERED", ATTEMPTS, "demo.poll")
    assert row["events_count"] == distinct == 1 + 4 * ATTEMPTS + 3  # sent, then per attempt received/started/sent/retried
    assert all(rows[u]["state"] == "SUCCEEDED" for u in ordinary)
    assert max(sizes) < 64 * 1024
