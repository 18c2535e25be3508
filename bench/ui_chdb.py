"""`python -m bench.ui_chdb`: the task list's searches and the failure groups on modern ClickHouse
(chdb, in-process) over the same data as `make bench-ui` (the shared recording repeated to >= 1M
task events, their ~260k tasks): query time per search, 10 runs after 3 warm-ups (the queries
only: no HTTP, no rendering; make bench-ui measures pages on the 18.16 server)."""

from __future__ import annotations

import statistics
import tempfile
import time

from bench.engine import _recording, recorded_copies
from streams.engine import Tracker
from streams.migrate import migrate
from streams.search import parse
from streams.sink.rows import TASK_COLUMNS, task_row
from streams.ui import queries
from tests.sqlkit import Chdb, insert_sql


def main() -> None:
    rec = _recording()
    span = max(e["timestamp"] for e in rec) - min(e["timestamp"] for e in rec) + 60
    per_copy = sum(1 for e in rec if e["type"].startswith("task-"))
    copies = -(-1_000_000 // per_copy)
    shift0 = time.time() - copies * span - min(e["timestamp"] for e in rec)
    tracker = Tracker()
    t0 = time.monotonic()
    for i, e in enumerate(recorded_copies()):
        c = i // len(rec)
        if c >= copies:
            break
        e = dict(e, timestamp=e["timestamp"] + shift0 + c * span); e.pop("local_received", None)
        tracker.feed(e, "bench")
    records = list(tracker.task_records())
    print(f"folded {len(records):,} tasks in {time.monotonic() - t0:.0f}s", flush=True)
    ch = Chdb(tempfile.mkdtemp(prefix="chdb-bench-"))
    migrate(ch.execute, "celery")
    t0 = time.monotonic()
    for s in range(0, len(records), 20000):
        ch.execute(insert_sql("celery", "tasks", TASK_COLUMNS, [task_row(r) for r in records[s:s + 20000]]))
    ch.execute("OPTIMIZE TABLE celery.tasks FINAL")
    print(f"inserted in {time.monotonic() - t0:.0f}s", flush=True)
    present = queries.table_columns(ch.query, "celery", "tasks")
    cases = [("name part (flaky)", queries.TaskFilter(cluster="bench", name="flaky")),
             ("name glob (feas.*retry)", queries.TaskFilter(cluster="bench", name="feas.*retry")),
             ("a word in 7 columns (boom)", queries.TaskFilter(cluster="bench", search=parse("boom"))),
             ("a word found nowhere", queries.TaskFilter(cluster="bench", search=parse("zz-not-there"))),
             ("kwargs:customer=1234", queries.TaskFilter(cluster="bench", search=parse("kwargs:customer=1234"))),
             ("exception:error -state:CRITICAL", queries.TaskFilter(cluster="bench", search=parse("exception:error -state:CRITICAL"))),
             ("every cluster, traceback:line", queries.TaskFilter(search=parse("traceback:line")))]
    for name, where in cases:
        times = []
        for _ in range(13):
            t = time.perf_counter(); queries.tasks(ch.query, "celery", present, where, 51); times.append((time.perf_counter() - t) * 1000)
        times = sorted(times[3:])
        print(f"{name:36} p50 {statistics.median(times):7.1f} ms  max {times[-1]:7.1f} ms", flush=True)
    for label, fn in (("failure groups (all time)", lambda: queries.failure_groups(ch.query, "celery", "bench", (), 0.0, time.time(), 501)),):
        times = []
        for _ in range(8):
            t = time.perf_counter(); fn(); times.append((time.perf_counter() - t) * 1000)
        times = sorted(times[3:])
        print(f"{label:36} p50 {statistics.median(times):7.1f} ms  max {times[-1]:7.1f} ms", flush=True)
    ch.close()


if __name__ == "__main__":
    main()
