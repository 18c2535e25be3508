"""`make bench-ui`: the web UI's server time per page on >= 1M events / 250k tasks.

A private ClickHouse (Debian's 18.16) on free ports is loaded with the shared load fixture
repeated until >= 1,000,000 task events (uuids rewritten per copy, each copy shifted in time so
the data ends now), their ~250k task records and the workers, through the sink's own row
functions and writer. Then a real `python -m streams ui` serves it, and every page is requested
repeatedly over HTTP; the server's own time per request is read from its ``Server-Timing``
header (request in, response out: queries + rendering, no network or browser). Prints p50/p95
per page against the goal (300 ms) and writes bench/results/ui.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from bench.engine import _recording, recorded_copies
from devstack import services
from devstack import dev_settings
from streams.config import Settings
from streams.engine import Tracker
from streams.migrate import migrate
from streams.clickhouse import ClickHouseWriter, connect
from streams.ui.charts import CHARTS
from streams.sink.rows import EVENT_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, event_row, task_row, worker_row

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "bench"
GOAL_MS = 300.0
BATCH = 100_000


def load(settings: Settings, min_events: int) -> dict:
    """Fold and insert the events; returns facts the page list needs (names, uuids...)."""
    recording = _recording()
    span = max(e["timestamp"] for e in recording) - min(e["timestamp"] for e in recording) + 60
    per_copy = sum(1 for e in recording if e["type"].startswith("task-"))
    copies = -(-min_events // per_copy)
    shift0 = time.time() - copies * span - min(e["timestamp"] for e in recording)
    tracker = Tracker()
    writer = ClickHouseWriter(settings, connect(settings))
    rows: list[tuple] = []
    events = 0
    t0 = time.monotonic()
    for i, e in enumerate(recorded_copies()):
        copy_no = i // len(recording)
        if copy_no >= copies:
            break
        e = dict(e, timestamp=e["timestamp"] + shift0 + copy_no * span)
        e.pop("local_received", None)
        tracker.feed(e, CLUSTER)
        if e["type"].startswith("task-"):
            rows.append(event_row({"cluster": CLUSTER, "bridge": "bench", "seq": i, "received_at": e["timestamp"], "event": e}))
            events += 1
        if len(rows) >= BATCH:
            writer.insert("events", EVENT_COLUMNS, rows)
            rows = []
    writer.insert("events", EVENT_COLUMNS, rows)
    records = list(tracker.task_records())
    for start in range(0, len(records), BATCH):
        writer.insert("tasks", TASK_COLUMNS, [task_row(r) for r in records[start : start + BATCH]])
    workers = list(tracker.worker_records())
    writer.insert("workers", WORKER_COLUMNS, [worker_row(w) for w in workers])
    names = Counter(r["name"] for r in records if r["name"])
    retried = next(r for r in reversed(records) if r["state"] == "RECOVERED")
    chained = next((r for r in reversed(records) if r.get("parent_id") and r.get("root_id") != r["uuid"]), retried)
    newest = max(records, key=lambda r: r["first_seen_at"])
    deep = sorted(records, key=lambda r: (r["first_seen_at"], r["uuid"]), reverse=True)[min(2500, len(records) - 1)]
    return {
        "events": events, "tasks": len(records), "workers": len(workers), "load_seconds": time.monotonic() - t0,
        "name": names.most_common(1)[0][0], "worker": workers[0]["hostname"], "retried": retried["uuid"],
        "chained": chained["uuid"], "prefix": newest["uuid"][:8], "cursor": f"{deep['first_seen_at']!r}:{deep['uuid']}",
    }  # fmt: skip


def pages(facts: dict) -> list[tuple[str, str]]:
    c = f"cluster={CLUSTER}"
    return [
        ("tasks (newest 50)", f"/tasks?{c}"),
        ("tasks, every cluster", "/tasks"),
        ("tasks live refresh (fragment)", f"/tasks/rows?{c}"),
        ("tasks state=FAILED", f"/tasks?{c}&state=FAILED"),
        ("tasks state=RECOVERED+CRITICAL", f"/tasks?{c}&state=RECOVERED&state=CRITICAL"),
        ("tasks name=<most common>", f"/tasks?{c}&name={facts['name']}"),
        ("tasks worker=<one>", f"/tasks?{c}&worker={facts['worker']}"),
        ("tasks uuid search (prefix)", f"/tasks?{c}&uuid={facts['prefix']}"),
        ("tasks last hour", f"/tasks?{c}&window=3600"),
        ("search: name part (flaky)", f"/tasks?{c}&name=flaky"),
        ("search: name glob (feas.*retry)", f"/tasks?{c}&name=feas.%2Aretry"),
        ("search: a word in 7 columns (boom)", f"/tasks?{c}&q=boom"),
        ("search: a word found nowhere (full scan)", f"/tasks?{c}&q=zz-not-there"),
        ("search: kwargs:customer=1234 (none)", f"/tasks?{c}&q=kwargs%3Acustomer%3D1234"),
        ("search: exception:error -state:CRITICAL", f"/tasks?{c}&q=exception%3Aerror+-state%3ACRITICAL"),
        ("search: args:3 + state=FAILED + last hour", f"/tasks?{c}&q=args%3A3&state=FAILED&window=3600"),
        ("search: every cluster, traceback:line", "/tasks?q=traceback%3Aline"),
        ("tasks 50th page (keyset)", f"/tasks?{c}&before={facts['cursor']}"),
        ("task page (3 attempts)", f"/task?{c}&uuid={facts['retried']}"),
        ("task live refresh (fragment)", f"/task/live?{c}&uuid={facts['retried']}"),
        ("task page in a chain (graph)", f"/task?{c}&uuid={facts['chained']}"),
        ("failure groups page (all time)", f"/failures?{c}"),
        ("failure groups page, last hour", f"/failures?{c}&window=3600"),
        ("API /api/tasks?limit=100", f"/api/tasks?{c}&limit=100"),
        ("API /api/tasks state=FAILURE sort_by=-received", f"/api/tasks?state=FAILURE&sort_by=-received&limit=50"),
        ("API /api/tasks?search=boom", f"/api/tasks?search=boom&limit=50"),
        ("API /api/tasks offset=10000 sort_by=name", f"/api/tasks?sort_by=name&limit=50&offset=10000"),
        ("API /api/task/info/<id>", f"/api/task/info/{facts['retried']}"),
        ("API /api/v1/failure-groups", f"/api/v1/failure-groups?{c}&window=0"),
        ("workers", f"/workers?{c}"),
        ("workers live refresh (fragment)", f"/workers/rows?{c}"),
        ("analytics page (filters, 7 chart slots)", f"/analytics?{c}"),
        *[(f"analytics chart: {chart_id}", f"/analytics/panel?{c}&chart={chart_id}") for chart_id, _, _ in CHARTS.values()],
        *[(f"analytics chart, last hour: {chart_id}", f"/analytics/panel?{c}&window=3600&chart={chart_id}") for chart_id, _, _ in CHARTS.values()],
    ]


def server_ms(url: str) -> tuple[float, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        timing = response.headers.get("Server-Timing", "")
        status = response.status
    wall = (time.perf_counter() - started) * 1000
    match = re.search(r"app;dur=([\d.]+)", timing)
    if status != 200 or not match:
        raise RuntimeError(f"{url}: HTTP {status}, Server-Timing {timing!r}")
    return float(match.group(1)), wall


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (after 3 warm-up)")
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    ch_tcp, ch_http, ui_port = services.free_port(), services.free_port(), services.free_port()
    clickhouse, argv_, env, ready = services.clickhouse(run_dir, ch_tcp, ch_http)
    clickhouse.start(argv_, env=env, cwd=run_dir / "clickhouse", ready=ready, timeout=30)
    results: dict = {"machine_cores": os.cpu_count(), "goal_ms": GOAL_MS}
    ui = None
    try:
        settings = dev_settings(environ={}, clickhouse_port=ch_tcp, ui_port=str(ui_port))
        migrate(connect(settings, with_database=False).execute, settings.clickhouse_database)
        facts = load(settings, args.events)
        results["data"] = {k: facts[k] for k in ("events", "tasks", "workers", "load_seconds")}
        print(f"bench-ui: {facts['events']:,} events, {facts['tasks']:,} tasks, {facts['workers']} workers loaded in {facts['load_seconds']:.0f}s")
        client = connect(settings)
        client.execute(f"OPTIMIZE TABLE {settings.clickhouse_database}.tasks FINAL")  # as after the background merges

        env = {**os.environ, "CLICKHOUSE_PORT": str(ch_tcp), "UI_PORT": str(ui_port), "PYTHONUNBUFFERED": "1"}
        log = open(run_dir / "ui.log", "wb")
        ui = subprocess.Popen([sys.executable, "-m", "streams", "ui"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        base = f"http://127.0.0.1:{ui_port}"
        deadline = time.monotonic() + 30
        while not services.port_open(ui_port):
            if time.monotonic() > deadline or ui.poll() is not None:
                raise RuntimeError(f"UI did not start: {(run_dir / 'ui.log').read_text()}")
            time.sleep(0.1)

        results["pages"] = {}
        print(f"  server time per page, {args.requests} requests each after 3 warm-up (goal <= {GOAL_MS:.0f} ms):")
        print(f"    {'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  {'wall p50':>8}")
        for name, path in pages(facts):
            for _ in range(3):
                server_ms(base + path)
            timings = [server_ms(base + path) for _ in range(args.requests)]
            server = [t[0] for t in timings]
            wall = [t[1] for t in timings]
            entry = {"path": path, "p50_ms": statistics.median(server), "p95_ms": percentile(server, 0.95),
                     "max_ms": max(server), "wall_p50_ms": statistics.median(wall)}  # fmt: skip
            results["pages"][name] = entry
            flag = "" if entry["p95_ms"] <= GOAL_MS else "  OVER GOAL"
            print(f"    {name:44} {entry['p50_ms']:8.1f} {entry['p95_ms']:8.1f} {entry['max_ms']:8.1f}  {entry['wall_p50_ms']:8.1f}{flag}")
        charts = [v for k, v in results["pages"].items() if k.startswith("analytics chart: ")]
        results["analytics_all_charts_sum_p50_ms"] = sum(v["p50_ms"] for v in charts)
        print(f"  analytics, the seven charts of one view one after the other (sum of p50): {results['analytics_all_charts_sum_p50_ms']:.0f} ms")
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(20)
        clickhouse.stop()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ui.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
