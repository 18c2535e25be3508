"""The sink crashes after an INSERT and before its offset commit; a new one re-inserts: no answer changes.

Real Tansu and ClickHouse 18.16. The crash is injected where it hurts: the consumer's commit
raises right after the first batch was written, so the next sink re-reads and re-inserts it.
"""

from __future__ import annotations

import threading
import time
import uuid

from bench.engine import load_events
from demo.backlog import produce_events, produce_task_records
from streams.report import DEFAULT_QUERIES, run_report
from streams.sink.consumer import ClickHouseSink


class Crash(Exception):
    pass


def test_crash_between_insert_and_commit_changes_no_answer(stack, clickhouse_client):
    run = uuid.uuid4().hex[:6]
    settings = stack["settings"].replace(cluster=f"sinkcrash-{run}", sink_group=f"sink-crash-{run}")
    events = [e for e in load_events(3000) if e["type"].startswith("task-")][:3000]
    n_events = produce_events(settings, events)
    n_tasks = produce_task_records(settings, events)
    db = settings.clickhouse_database

    def ours() -> tuple[int, int]:
        where = f"WHERE cluster = '{settings.cluster}'"
        return (
            clickhouse_client.execute(f"SELECT count() FROM {db}.events FINAL {where}")[0][0],
            clickhouse_client.execute(f"SELECT count() FROM {db}.tasks FINAL {where}")[0][0],
        )

    def answers():
        def execute(sql, params):
            rows, types = clickhouse_client.execute(sql, params, with_column_types=True)
            return [n for n, _ in types], rows

        return [(a.query.name, a.rows) for a in run_report(execute, db, {"cluster": settings.cluster, "since": 0}, DEFAULT_QUERIES)]

    first = ClickHouseSink(settings)
    first._connect()

    def crash(_batch):
        raise Crash("killed between INSERT and commit")

    first._commit = crash
    crashed = 0
    deadline = time.monotonic() + 120
    while ours() != (n_events, n_tasks):
        assert time.monotonic() < deadline, f"first sink wrote {ours()} of {(n_events, n_tasks)}"
        try:
            first.run_once()
        except Crash:
            crashed += 1  # the batch is in ClickHouse, its offsets are not committed
    first.consumer.close()
    assert crashed
    before = answers()
    written_before = sum(first.inserted.values())

    second = ClickHouseSink(settings)  # same group: starts from the last commit, i.e. re-reads
    thread = threading.Thread(target=second.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while sum(second.inserted.values()) < written_before:
        assert time.monotonic() < deadline, f"second sink re-read {dict(second.inserted)} of {written_before}"
        time.sleep(0.5)
    second.stop()
    thread.join(30)
    assert ours() == (n_events, n_tasks)
    assert answers() == before  # every report answer unchanged by the re-inserted rows
