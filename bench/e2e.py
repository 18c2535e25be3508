"""`make bench-e2e`: the whole pipeline on this machine, at increasing offered rates.

RabbitMQ -> bridge -> Kafka (private Tansu) -> streams worker -> sink (its own process) ->
ClickHouse (private 18.16), every stage running here at once.

- live:   a real Celery worker (-E, prefork) runs `demo.add` tasks sent at N tasks/s;
- replay: recorded Celery bodies (the shared load fixture, fresh uuids, timestamps set to the
          moment of publishing) go straight into the event exchange (`celeryev`) as `task.multi`
          batches, as Celery's workers send them, to go beyond what live workers emit here.

Each step runs for --seconds, then waits until ClickHouse holds every event of the step.
Measured per step: the rate actually offered, the sustained end-to-end rate (events of the step
/ time from its first publish until its last event is visible in ClickHouse), event ->
ClickHouse latency p50/p95/p99 (Celery event timestamp -> first poll that sees the row, polled
every 100 ms on a sample of tasks first published in that step), CPU (% of one core) and peak
RSS per component, the load average. A publisher that times out (an overloaded broker) ends its
step early and is reported in the step; bench/results/e2e.json and e2e.png (throughput and
latency vs offered rate) are written whatever happens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import amqp.exceptions
import kombu.exceptions
import orjson
import psutil
from celery.events.event import get_exchange
from kombu import Connection

from bench.engine import recorded_copies
from bench.streams import counters
from devstack.pipeline import Pipeline
from devstack import services
from devstack.private import private_stack
from streams.clickhouse import connect

ROOT = Path(__file__).resolve().parent.parent
PROBES_PER_STEP = 400
MULTI = 10  # task events per task.multi message (Celery's prefork workers batch theirs too)


class Components:
    """CPU and RSS of each running component (process trees: Celery's pool children count)."""

    def __init__(self, pids: dict[str, int], alone: tuple[str, ...] = ("publisher (bench)",)):
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid}
        self.alone = {self.procs[name].pid for name in alone if name in self.procs}  # the parent of every other

    def _tree(self, proc: psutil.Process) -> list[psutil.Process]:
        if proc.pid in self.alone:
            return [proc]
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, measure) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            total = 0.0
            for p in self._tree(proc):
                try:
                    total += measure(p)
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) so far."""
        return self._sum(lambda p: sum(p.cpu_times()[:2]))

    def rss(self) -> dict[str, float]:
        """Resident memory, MB."""
        return self._sum(lambda p: p.memory_info().rss / 2**20)


class LatencyProbe(threading.Thread):
    """Polls ClickHouse for sampled tasks, every 100 ms. Two latencies:

    - event row: first sight of an event's row in `events` - the event's timestamp (split into the
      broker -> bridge part, from the pack entry's received_at, and the rest);
    - task state: first sight of a task record version in `tasks` - its last_seen_at (the newest
      event folded into it): how long until a task's state reflects an event.

    "First sight" is the start of the query that returned the row (it was visible by then), so the
    figures are upper bounds by at most one poll interval (reported per step). A poll that was
    running when ``reset`` started a new step is discarded: its rows belong to the previous step's
    tasks, and counting them as new sights measured their age, not their latency (with the tasks
    first met in an earlier step, what issue 13 saw as multi-second "stalls").
    """

    def __init__(self, settings):
        super().__init__(daemon=True, name="latency-probe")
        self.settings = settings
        self.client = connect(settings)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.generation = 0
        self.reset()

    def add(self, uuid: str) -> None:
        with self.lock:
            self.uuids.append(uuid)

    def take_max_gap(self) -> float:
        """Longest time between two polls since the last call (the measurement's own resolution)."""
        with self.lock:
            gap, self.max_gap = self.max_gap, 0.0
        return round(gap, 3)

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.max_gap = 0.0
            self.uuids: list[str] = []
            self.seen: set[tuple] = set()
            self.event_latency: list[float] = []
            self.bridge_lag: list[float] = []
            self.state_latency: list[float] = []

    def run(self) -> None:
        db = self.settings.clickhouse_database
        last = time.time()
        while not self.stopped.is_set():
            with self.lock:
                uuids, generation = tuple(self.uuids), self.generation
            if uuids:
                params = {"c": self.settings.cluster, "u": uuids}
                events_at = time.time()
                events = self.client.execute(
                    f"SELECT uuid, type, hostname, pid, clock, timestamp, received_at FROM {db}.events "
                    f"WHERE cluster = %(c)s AND uuid IN %(u)s", params,
                )  # fmt: skip
                versions_at = time.time()
                versions = self.client.execute(
                    f"SELECT uuid, events_count, last_seen_at FROM {db}.tasks WHERE cluster = %(c)s AND uuid IN %(u)s", params
                )
                with self.lock:
                    if generation != self.generation:
                        continue  # a new step began meanwhile: these rows are the old step's
                    self.max_gap, last = max(self.max_gap, events_at - last), events_at
                    for row in events:
                        if row[:5] not in self.seen:
                            self.seen.add(row[:5])
                            self.event_latency.append(events_at - row[5])
                            self.bridge_lag.append(row[6] - row[5])
                    for uuid, count, last_seen in versions:
                        if (uuid, count) not in self.seen:
                            self.seen.add((uuid, count))
                            self.state_latency.append(versions_at - last_seen)
            time.sleep(0.1)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def count_events(client, settings, since: float, until: float, tasks_only: bool = False) -> int:
    only = " AND type LIKE 'task-%%'" if tasks_only else ""  # live: not the worker's heartbeats
    return client.execute(
        f"SELECT count() FROM {settings.clickhouse_database}.events "
        f"WHERE cluster = %(c)s AND timestamp >= %(s)s AND timestamp <= %(u)s{only}",
        {"c": settings.cluster, "s": since, "u": until},
    )[0][0]


PUBLISH_ERRORS = (OSError, socket.timeout, amqp.exceptions.AMQPError, kombu.exceptions.KombuError)


def publish_replay(url: str, exchange: str, events, rate: float, seconds: float, probe: LatencyProbe, every: int, known: set[str]) -> tuple[int, float, str | None]:
    """Publish ``rate`` events/s for ``seconds``; returns (events published, seconds taken, error).

    ``known``: uuids already published in earlier steps, for the whole run. A task is probed only
    in the step that publishes its first event: the recording spreads a task's events over ~6,500
    events (p50), i.e. several seconds, and probing a task first met in an earlier step measured
    the age of its old rows (the "stall" of issue 13). An overloaded broker (a publish that times
    out) ends the step early and is reported, not raised.
    """
    started, sent = time.monotonic(), 0
    try:
        with Connection(url, connect_timeout=10, transport_options={"write_timeout": 10, "read_timeout": 10}) as conn:
            producer = conn.Producer(exchange=get_exchange(conn, exchange))

            def publish(body: bytes, routing_key: str) -> None:
                producer.publish(body, routing_key=routing_key, content_type="application/json", content_encoding="utf-8")

            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) - sent
                if due <= 0:
                    time.sleep(0.005)
                    continue
                now, multi = time.time(), []
                for e in itertools.islice(events, due):
                    e.pop("local_received", None)  # the receiver's field, not in a raw body
                    e["timestamp"] = now
                    if e["type"].startswith("task-"):
                        uuid = e["uuid"]
                        if uuid not in known:
                            known.add(uuid)
                            if len(known) % every == 0:
                                probe.add(uuid)
                        multi.append(e)
                        if len(multi) >= MULTI:
                            publish(orjson.dumps(multi), "task.multi")
                            sent, multi = sent + len(multi), []
                    else:
                        publish(orjson.dumps(e), e["type"].replace("-", "."))
                        sent += 1
                if multi:
                    publish(orjson.dumps(multi), "task.multi")
                    sent += len(multi)
    except PUBLISH_ERRORS as exc:
        return sent, time.monotonic() - started, f"{type(exc).__name__}: {exc}"
    return sent, time.monotonic() - started, None


def publish_live(client, rate: float, seconds: float, probe: LatencyProbe, every: int) -> tuple[int, float, str | None]:
    started, sent = time.monotonic(), 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(max(due, 0)):
                task_id = client.send_task("demo.add", args=(sent, 1)).id
                sent += 1
                if sent % every == 0:
                    probe.add(task_id)
            time.sleep(0.005)
    except PUBLISH_ERRORS as exc:
        return sent, time.monotonic() - started, f"{type(exc).__name__}: {exc}"
    return sent, time.monotonic() - started, None


def run_step(mode: str, rate: float, seconds: float, publish, settings, probe, components, streams_in, timeout: float) -> dict:
    client = connect(settings)
    probe.reset()
    cpu0, wall0, folded0 = components.cpu(), time.monotonic(), streams_in()
    t_first = time.time()
    rss_max: dict[str, float] = {}
    sampler_stop = threading.Event()

    def sample_rss():
        while not sampler_stop.is_set():
            for name, mb in components.rss().items():
                rss_max[name] = max(rss_max.get(name, 0.0), mb)
            sampler_stop.wait(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    published, publish_seconds, publish_error = publish(rate, seconds, probe)
    t_last = time.time()
    if publish_error:
        print(f"  publisher stopped after {published:,} in {publish_seconds:.1f}s: {publish_error} (broker overloaded?)", flush=True)
    # replay: every published event; live: task-sent, -received, -started, -succeeded of each
    # demo.add, the last ones stamped by the worker after the last publish. Caught up = all of
    # them in ClickHouse's events table AND folded by the streams worker.
    expected, until = (published, t_last + 0.001) if mode == "replay" else (4 * published, t_last + timeout)
    deadline = time.monotonic() + timeout
    stored = folded = 0
    caught_up = False
    while time.monotonic() < deadline:
        stored = count_events(client, settings, t_first - 1, until, tasks_only=mode == "live")
        folded = streams_in() - folded0
        if stored >= expected and folded >= expected:
            caught_up = True
            break
        time.sleep(0.25)
    done_at = time.time()
    wall = time.monotonic() - wall0
    cpu1 = components.cpu()
    sampler_stop.set()
    sampler.join()
    time.sleep(1.5)  # the sink's last batch of task records, and a last probe poll
    with probe.lock:
        event_latency, bridge_lag, state_latency = list(probe.event_latency), list(probe.bridge_lag), list(probe.state_latency)
    client.disconnect()
    return {
        "mode": mode,
        "offered_per_second": rate,
        "published_events" if mode == "replay" else "tasks_sent": published,
        "publish_rate_achieved": published / publish_seconds if publish_seconds else 0.0,
        "publish_error": publish_error,
        "events_stored": stored,
        "events_folded": folded,
        "caught_up": caught_up,
        "sustained_events_per_second": min(stored, folded) / (done_at - t_first),
        "task_state_latency_s": {f"p{q}": percentile(state_latency, q) for q in (50, 95, 99)} | {"samples": len(state_latency)},
        "event_row_latency_s": {f"p{q}": percentile(event_latency, q) for q in (50, 95, 99)} | {"samples": len(event_latency)},
        "broker_to_bridge_s": {f"p{q}": percentile(bridge_lag, q) for q in (50, 95, 99)},
        "cpu_percent": {name: round(100 * (cpu1[name] - cpu0[name]) / wall, 1) for name in cpu1},
        "probe_poll_max_s": probe.take_max_gap(),
        "load_average": os.getloadavg(),
        "rss_max_mb": {name: round(mb) for name, mb in rss_max.items()},
    }


def print_step(step: dict) -> None:
    unit = "events/s" if step["mode"] == "replay" else "tasks/s"

    def lat(key):
        return " / ".join(f"{step[key][q]:.2f}" if step[key][q] is not None else "-" for q in ("p50", "p95", "p99"))

    busiest = sorted(step["cpu_percent"].items(), key=lambda kv: -kv[1])[:4]
    print(
        f"  {step['mode']:6} offered {step['offered_per_second']:>7,.0f} {unit:8} -> sustained {step['sustained_events_per_second']:>7,.0f} events/s"
        f"{'' if step['caught_up'] else ' (NOT caught up)'}\n"
        f"         latency p50/p95/p99: task state {lat('task_state_latency_s')} s, event row {lat('event_row_latency_s')} s "
        f"(broker->bridge {lat('broker_to_bridge_s')} s; probe polls at most {step['probe_poll_max_s']:.2f} s apart)\n"
        f"         CPU % of a core: " + ", ".join(f"{n} {c:.0f}" for n, c in busiest)
        + f"; load average {step['load_average'][0]:.2f}"
        + (f"\n         PUBLISHER STOPPED: {step['publish_error']}" if step.get("publish_error") else ""),
        flush=True,
    )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in results["steps"] if s["mode"] == "replay"]
    if not steps:
        return
    offered = [s["offered_per_second"] for s in steps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(offered, offered, "--", color="grey", label="offered")
    ax1.plot(offered, [s["sustained_events_per_second"] for s in steps], "o-", label="sustained end to end")
    ax1.set(xlabel="offered events/s", ylabel="events/s", title="Throughput (replay, 2 cores)")
    ax1.legend()
    for q in ("p50", "p95", "p99"):
        ax2.plot(offered, [s["task_state_latency_s"][q] or 0 for s in steps], "o-", label=f"task state {q}")
    ax2.plot(offered, [s["event_row_latency_s"]["p99"] or 0 for s in steps], "x:", label="event row p99")
    ax2.axhline(2.0, color="red", linestyle=":", label="p99 goal 2 s")
    ax2.set(xlabel="offered events/s", ylabel="seconds", title="Event -> queryable in ClickHouse", yscale="log")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay-rates", default="1000,2500,5000,10000,20000", help="events/s, comma list ('' = skip replay)")
    parser.add_argument("--live-rates", default="25,50,100", help="tasks/s with a real Celery worker ('' = skip live)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each step publishes")
    parser.add_argument("--timeout", type=float, default=240.0, help="catch-up limit per step")
    args = parser.parse_args(argv)
    rates = lambda text: [float(r) for r in text.split(",") if r.strip()]  # noqa: E731

    run_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    results: dict = {"machine_cores": os.cpu_count(), "seconds_per_step": args.seconds, "load_average_at_start": os.getloadavg(), "steps": []}
    try:
        run(args, rates, run_dir, results)
    except BaseException as exc:  # noqa: BLE001 - whatever stopped the run, what was measured is written
        results["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  bench-e2e stopped: {results['error']}", flush=True)
        raise
    finally:
        write_results(results, run_dir)


def run(args, rates, run_dir: Path, results: dict) -> None:
    with private_stack(run_dir, prefix="celery-monitor-e2e") as stack:
        settings = stack.settings.replace(cluster=f"e2e-{stack.settings.app_id[-6:]}", session_timeout=10.0,
            bridge_metrics_addr=f"127.0.0.1:{services.free_port()}",
        )  # fmt: skip
        pipeline = Pipeline(settings, run_dir / "logs")
        probe = LatencyProbe(settings)
        try:
            bridge = pipeline.start_bridge()
            metrics_port = services.free_port()
            streams = pipeline.start_streams(STREAMS_SINK="off", STREAMS_METRICS_ADDR=f"127.0.0.1:{metrics_port}")
            streams_in = lambda: counters(metrics_port).get("streams_events_in_total", 0.0)  # noqa: E731
            sink = pipeline._proc("sink", [sys.executable, "-m", "streams", "sink"])
            pipeline.wait_for_log(streams, "Worker ready", 120)  # tables recovered, partitions assigned
            pipeline.wait_for_log(sink, "partitions assigned", 60)  # joined its group: the first step starts warm
            rabbit = next((p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"), None)
            pids = {"bridge": bridge.pid, "streams": streams.pid, "sink": sink.pid, "clickhouse": stack.clickhouse.pid(),
                    "kafka (tansu)": stack.tansu.pid(), "rabbitmq": rabbit, "publisher (bench)": os.getpid()}  # fmt: skip
            probe.start()
            print(f"bench-e2e: bridge, streams worker, sink, Tansu, ClickHouse, RabbitMQ on {os.cpu_count()} cores; {args.seconds:.0f}s per step"
                  f" (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")  # fmt: skip
            if rates(args.live_rates):
                celery = pipeline.start_celery_worker()
                components = Components({**pids, "celery worker": celery.pid})
                for rate in rates(args.live_rates):
                    every = max(1, int(rate * args.seconds / PROBES_PER_STEP))
                    publish = lambda r, s, p: publish_live(pipeline.client, r, s, p, every)  # noqa: E731
                    step = run_step("live", rate, args.seconds, publish, settings, probe, components, streams_in, args.timeout)
                    results["steps"].append(step)
                    print_step(step)
                celery.stop()
            if rates(args.replay_rates):
                components = Components(pids)
                events = recorded_copies()
                known: set[str] = set()  # every uuid published so far (a task is probed in its first step only)
                for rate in rates(args.replay_rates):
                    tasks_per_step = rate * args.seconds / 5
                    every = max(1, int(tasks_per_step / PROBES_PER_STEP))
                    publish = lambda r, s, p: publish_replay(settings.broker_url, settings.bridge_event_exchange, events, r, s, p, every, known)  # noqa: E731
                    step = run_step("replay", rate, args.seconds, publish, settings, probe, components, streams_in, args.timeout)
                    results["steps"].append(step)
                    print_step(step)
        finally:
            probe.stopped.set()
            pipeline.stop()
            try:
                pipeline.cleanup_broker()
            except PUBLISH_ERRORS as exc:  # an overloaded broker may refuse even this; the queue has a TTL
                print(f"  could not delete the bridge queue: {exc}")


def write_results(results: dict, run_dir: Path) -> None:
    replay = [s for s in results["steps"] if s["mode"] == "replay" and s["caught_up"]]
    if replay:
        best = max(replay, key=lambda s: s["sustained_events_per_second"])
        results["max_sustained_events_per_second"] = best["sustained_events_per_second"]
        results["bottleneck"] = max(best["cpu_percent"].items(), key=lambda kv: kv[1])[0]
        print(f"  max sustained: {best['sustained_events_per_second']:,.0f} events/s (goal >= 15,000); busiest component at that step: "
              f"{results['bottleneck']} ({best['cpu_percent'][results['bottleneck']]:.0f}% of a core)")  # fmt: skip
    results["load_average_at_end"] = os.getloadavg()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(results, indent=2))
    try:
        plot(results, out / "e2e.png")
    except Exception as exc:  # noqa: BLE001 - the JSON is what matters; say why there is no chart
        print(f"  no e2e.png: {exc}")
    print(f"  wrote {out / 'e2e.json'} and {out / 'e2e.png'}; logs in {run_dir / 'logs'}")


if __name__ == "__main__":
    main()
