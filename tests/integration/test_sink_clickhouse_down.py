"""ClickHouse stops for a while under load: the sink holds one batch, fetches nothing more, and
writes everything once ClickHouse is back. Nothing lost, memory bounded.

Real Tansu and ClickHouse 18.16; the sink runs as `python -m streams sink` (its own process, so
its RSS is its own). While ClickHouse is down, a backlog far bigger than one batch is produced.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from bench.engine import load_events
from demo.backlog import produce_events, produce_task_records
from devstack.pipeline import Pipeline
from devstack import services

EVENTS = 150_000  # a third (~50k events, ~20 MB on Kafka) arrives during the outage: 10 sink batches
RSS_GROWTH_LIMIT_MB = 60


def by_task(events: list[dict], parts: int) -> list[list[dict]]:
    """Split whole tasks (all events of a uuid together) into ``parts`` groups, in order."""
    tasks: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        tasks[event["uuid"]].append(event)
    uuids = list(tasks)
    size = -(-len(uuids) // parts)
    return [[e for u in uuids[i : i + size] for e in tasks[u]] for i in range(0, len(uuids), size)]


def test_clickhouse_down_under_load_loses_nothing_and_holds_memory(stack, clickhouse_client):
    run = uuid.uuid4().hex[:6]
    settings = stack["settings"].replace(cluster=f"chdown-{run}", sink_group=f"sink-chdown-{run}", sink_batch_rows=5000, sink_batch_seconds=0.5
    )
    events = [e for e in load_events(EVENTS) if e["type"].startswith("task-")]
    before, during, after = by_task(events, 3)
    db, where = settings.clickhouse_database, f"WHERE cluster = '{settings.cluster}'"

    def written() -> tuple[int, int]:
        return (
            clickhouse_client.execute(f"SELECT count() FROM {db}.events FINAL {where}")[0][0],
            clickhouse_client.execute(f"SELECT count() FROM {db}.tasks FINAL {where}")[0][0],
        )

    def wait_for(expected: tuple[int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (got := written()) != expected:
            assert sink.alive(), sink.tail()
            assert time.monotonic() < deadline, f"ClickHouse has {got}, expected {expected}\n{sink.tail()}"
            time.sleep(0.5)

    pipeline = Pipeline(settings, stack["run_dir"] / "logs")
    sink = pipeline._proc("sink", [services.python_exe(), "-m", "streams", "sink"])
    clickhouse = stack["clickhouse"]
    try:
        expected = (produce_events(settings, before), produce_task_records(settings, before))
        wait_for(expected, 90)

        clickhouse.stop()
        rss_at_stop = services.rss_mb(sink.pid)
        expected = tuple(a + b for a, b in zip(expected, (produce_events(settings, during), produce_task_records(settings, during))))
        deadline, rss_max = time.monotonic() + 15, rss_at_stop
        while time.monotonic() < deadline:  # the sink keeps retrying with the backlog waiting in Kafka
            assert sink.alive(), sink.tail()
            rss_max = max(rss_max, services.rss_mb(sink.pid))
            time.sleep(0.5)
        assert "ClickHouse unavailable" in sink.log_text()
        assert rss_max - rss_at_stop < RSS_GROWTH_LIMIT_MB, (rss_at_stop, rss_max)

        stack["stack"].start_clickhouse()
        clickhouse_client.disconnect()
        expected = tuple(a + b for a, b in zip(expected, (produce_events(settings, after), produce_task_records(settings, after))))
        wait_for(expected, 120)
        assert "ClickHouse is back" in sink.log_text()
        print(f"outage: {len(during):,} events produced while ClickHouse was down; sink RSS {rss_at_stop:.0f} -> max {rss_max:.0f} MB")
    finally:
        stack["stack"].start_clickhouse()  # never leave the shared test server stopped (no-op when running)
        pipeline.stop()
