"""`make chaos`: faults under a steady real Celery workload, then: was anything lost?

A Celery worker (RabbitMQ, -E) runs a steady mix of tasks (succeed / fail / recover after a
retry / give up after retries) while a plan below kill -9s the bridge three times, kill -9s the
streams worker, stops ClickHouse, pauses Kafka (SIGSTOP/SIGCONT of the Tansu process) and kill
-9s the Kafka broker and restarts it (Tansu on s3 storage: its log survives, as a real broker's
does). Then it waits for catch-up and compares, task by task:

- a *witness*: an independent Celery event receiver on its own queue records every event the
  workers emitted. The engine folded over the witness's events is the record an undisturbed
  pipeline gives; ClickHouse's final record of every task must equal it (state, retries,
  events_count, exception, result, worker);
- every distinct event the witness saw must be in ClickHouse's `events` (events lost, goal 0);
- duplicates absorbed: records on the Kafka task-events topic beyond the distinct events
  (at-least-once redelivery after the kills), all folded away.

`python -m demo.chaos [--plan full|short|broker-restart]` runs a plan on a private stack (own
Tansu, S3 server and ClickHouse on free ports, the machine's RabbitMQ) and writes
bench/results/chaos-<plan>.json; `make test` runs the short and broker-restart plans
(tests/integration/test_chaos.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings
from streams.connections import kafka_python_options
from streams.engine import Tracker
from streams.packs import decode_pack

from devstack import services
from devstack.pipeline import Pipeline, PipelineError, wait_for_tasks

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("demo.chaos")

# name, args, expected final state, share of the workload
KINDS = (
    ("demo.add", (2, 3), "SUCCEEDED", 7),
    ("demo.fail", ("chaos",), "FAILED", 1),
    ("demo.flaky", (2,), "RECOVERED", 1),
    ("demo.always_retry", (), "CRITICAL", 1),
)
COMPARED = ("state", "retries", "events_count", "exception_type", "result", "worker", "name")


@dataclass(frozen=True)
class Plan:
    """Faults at seconds into the run (None / () = not in this plan)."""

    seconds: float  # how long the workload runs
    rate: float  # tasks per second
    bridge_kills: tuple[float, ...] = ()
    streams_kill: float | None = None
    clickhouse_stop: float | None = None
    clickhouse_down: float = 0.0
    kafka_pause: float | None = None  # SIGSTOP of the broker ...
    kafka_paused: float = 0.0  # ... for this long, then SIGCONT
    kafka_kills: tuple[float, ...] = ()  # kill -9 of the broker (needs durable storage: TANSU_STORAGE=s3) ...
    kafka_down: float = 0.0  # ... restarted this long after each
    storage: str = "memory"  # Tansu's storage for this plan


FULL = Plan(seconds=150, rate=20, bridge_kills=(10, 45, 80), streams_kill=30, clickhouse_stop=55, clickhouse_down=30,
            kafka_pause=100, kafka_paused=20, kafka_kills=(125,), kafka_down=8, storage="s3")  # fmt: skip
SHORT = Plan(seconds=45, rate=10, bridge_kills=(4, 14, 24), streams_kill=9, clickhouse_stop=17, clickhouse_down=10,
             kafka_pause=32, kafka_paused=6)  # fmt: skip
# A Kafka broker restart (rolling upgrades, a crash): kill -9 mid-workload, down a few seconds, twice.
BROKER_RESTART = Plan(seconds=30, rate=10, kafka_kills=(8, 19), kafka_down=4, storage="s3")
PLANS = {"full": FULL, "short": SHORT, "broker-restart": BROKER_RESTART}


def identity(event: dict) -> tuple:
    return (event.get("uuid"), event.get("type"), event.get("hostname"), event.get("pid"), event.get("clock"))


class Witness(threading.Thread):
    """Every Celery event on the broker, through Celery's own receiver on a queue of its own."""

    def __init__(self, broker_url: str, event_exchange: str = "celeryev"):
        super().__init__(daemon=True, name="chaos-witness")
        self.broker_url = broker_url
        self.event_exchange = event_exchange
        self.events: list[dict] = []
        self.receiver = None

    def run(self) -> None:
        from celery import Celery

        app = Celery("chaos-witness", broker=self.broker_url, set_as_current=False)
        app.conf.event_exchange = self.event_exchange  # the exchange the bridge reads
        with app.connection_for_read() as conn:
            self.receiver = app.events.Receiver(conn, handlers={"*": self.events.append})
            # The bodies as the producers sent them: Celery's receiver replaces a task-sent
            # event's clock with its own (clients never sync clocks); the pipeline keeps it.
            # Other tenants' messages on the shared broker's event exchange may be anything.
            self.receiver.event_from_message = lambda body, **_: (
                (body.get("type"), dict(body)) if isinstance(body, dict) and isinstance(body.get("type"), str) else ("foreign", {}))
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.events:  # the worker's heartbeats arrive every 2 s once the queue is bound
            if time.monotonic() > deadline:
                raise PipelineError("the chaos witness received no event (is the Celery worker sending events?)")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.join(10)


class Workload(threading.Thread):
    """Sends tasks at a steady rate; remembers each task's expected final state."""

    def __init__(self, client, plan: Plan):
        super().__init__(daemon=True, name="chaos-workload")
        self.client, self.plan = client, plan
        self.expected: dict[str, str] = {}
        self.cycle = [kind for kind in KINDS for _ in range(kind[3])]

    def run(self) -> None:
        started, sent = time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < self.plan.seconds:
            due = int(elapsed * self.plan.rate) + 1
            while sent < due:
                name, args, state, _ = self.cycle[sent % len(self.cycle)]
                self.expected[self.client.send_task(name, args=args).id] = state
                sent += 1
            time.sleep(0.05)


class Faults:
    """The plan's faults, each a pair of actions at times into the run."""

    def __init__(self, pipeline: Pipeline, stack, plan: Plan):
        self.pipeline, self.stack, self.plan = pipeline, stack, plan
        self.done: list[tuple[float, str]] = []

    def schedule(self) -> list[tuple[float, str, object]]:
        p, steps = self.plan, []
        for at in p.bridge_kills:
            steps.append((at, "kill -9 bridge, restart", self.kill_bridge))
        if p.streams_kill is not None:
            steps.append((p.streams_kill, "kill -9 streams worker, restart", self.kill_streams))
        if p.clickhouse_stop is not None:
            steps.append((p.clickhouse_stop, f"stop ClickHouse for {p.clickhouse_down:.0f}s", self.stack.clickhouse.stop))
            steps.append((p.clickhouse_stop + p.clickhouse_down, "start ClickHouse", self.stack.start_clickhouse))
        if p.kafka_pause is not None:
            steps.append((p.kafka_pause, f"pause Kafka (SIGSTOP Tansu) for {p.kafka_paused:.0f}s", lambda: self.signal_kafka(signal.SIGSTOP)))
            steps.append((p.kafka_pause + p.kafka_paused, "resume Kafka (SIGCONT)", lambda: self.signal_kafka(signal.SIGCONT)))
        for at in p.kafka_kills:
            steps.append((at, f"kill -9 Kafka (Tansu, {p.storage} storage) for {p.kafka_down:.0f}s", self.kill_kafka))
            steps.append((at + p.kafka_down, "restart Kafka", self.stack.start_tansu))
        return sorted(steps, key=lambda s: s[0])

    def run(self, began: float) -> None:
        for at, what, action in self.schedule():
            time.sleep(max(0.0, began + at - time.monotonic()))
            print(f"[chaos] t={time.monotonic() - began:5.1f}s {what}", flush=True)
            action()
            self.done.append((round(time.monotonic() - began, 1), what))
            self.pipeline.check_alive()

    def _kill_and_restart(self, name: str, restart) -> None:
        proc = next(p for p in reversed(self.pipeline.procs) if p.name == name and p.alive())
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)
        restart()

    def kill_bridge(self) -> None:
        self._kill_and_restart("bridge", lambda: self.pipeline.start_bridge(timeout=60))

    def kill_streams(self) -> None:
        self._kill_and_restart("streams", self.pipeline.start_streams)

    def signal_kafka(self, sig: int) -> None:
        os.kill(self.stack.tansu.pid(), sig)

    def kill_kafka(self) -> None:
        pid = self.stack.tansu.pid()
        os.kill(pid, signal.SIGKILL)
        while services.pid_alive(pid):
            time.sleep(0.05)


def kafka_task_events(settings: Settings, uuids: set[str]) -> int:
    """Events of our tasks in the task-events packs, duplicates included."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_options(settings), group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(settings.topic_task_events, p) for p in range(settings.topic_partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    count = 0
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            for record in records:
                for entry in decode_pack(record.value).entries:
                    if entry.event.get("uuid") in uuids:
                        count += 1
    consumer.close()
    return count


def clickhouse_event_identities(client, settings: Settings, uuids: set[str]) -> tuple[set[tuple], int]:
    rows = client.execute(
        f"SELECT uuid, type, hostname, pid, clock FROM {settings.clickhouse_database}.events "
        f"WHERE cluster = %(c)s AND uuid IN %(u)s",
        {"c": settings.cluster, "u": tuple(uuids)},
    )
    return {tuple(r) for r in rows}, len(rows)


def run_chaos(pipeline: Pipeline, stack, plan: Plan, catch_up_timeout: float = 300.0) -> dict:
    from streams.clickhouse import connect

    settings = pipeline.settings
    pipeline.start_bridge()
    pipeline.start_streams()
    pipeline.start_celery_worker()
    witness = Witness(settings.broker_url, settings.bridge_event_exchange)
    witness.start()
    witness.wait_ready()
    workload = Workload(pipeline.client, plan)
    began = time.monotonic()
    workload.start()
    faults = Faults(pipeline, stack, plan)
    faults.run(began)
    workload.join()
    print(f"[chaos] workload done: {len(workload.expected)} tasks in {plan.seconds:.0f}s; waiting for catch-up", flush=True)

    client = connect(settings)
    uuids = set(workload.expected)
    rows = wait_for_tasks(client, settings, list(uuids), pipeline, timeout=catch_up_timeout)
    caught_up = time.monotonic() - began - plan.seconds
    witness.stop()
    seen = [e for e in witness.events if e.get("uuid") in uuids]
    witnessed = {identity(e) for e in seen}
    deadline = time.monotonic() + 180  # read-backs after a broker restart make the sink trail by minutes on a slow broker
    while True:  # the events table is written by the same sink; it may trail by a batch
        stored, stored_rows = clickhouse_event_identities(client, settings, uuids)
        if witnessed <= stored or time.monotonic() > deadline:
            break
        time.sleep(1)

    tracker = Tracker()
    for event in seen:
        tracker.feed({k: v for k, v in event.items() if k != "local_received"}, settings.cluster)
    undisturbed = {r["uuid"]: r for r in tracker.task_records()}
    differ = {
        u: {k: (rows[u].get(k), undisturbed.get(u, {}).get(k)) for k in COMPARED if rows[u].get(k) != undisturbed.get(u, {}).get(k)}
        for u in uuids
    }
    differ = {u: d for u, d in differ.items() if d}
    wrong_state = {u: (rows[u]["state"], want) for u, want in workload.expected.items() if rows[u]["state"] != want}
    on_kafka = kafka_task_events(settings, uuids)
    result = {
        "plan": dataclasses.asdict(plan),
        "faults": faults.done,
        "tasks": len(uuids),
        "events_witnessed": len(witnessed),
        "events_lost": len(witnessed - stored),
        "events_unknown_to_witness": len(stored - witnessed),
        "kafka_task_event_records": on_kafka,
        "duplicates_absorbed_kafka": on_kafka - len(witnessed),
        "clickhouse_event_rows_before_merge": stored_rows,
        "tasks_differing_from_undisturbed": len(differ),
        "tasks_in_unexpected_state": len(wrong_state),
        "catch_up_seconds_after_workload": round(caught_up, 1),
        "examples": {"lost": sorted(witnessed - stored, key=str)[:5], "stored": sorted(stored, key=str)[:5], "differ": dict(list(differ.items())[:5]), "wrong_state": dict(list(wrong_state.items())[:5])},
    }
    return result


def summary(result: dict) -> str:
    return (
        f"[chaos] {result['tasks']} tasks, {result['events_witnessed']} events witnessed; "
        f"lost {result['events_lost']}; tasks differing from an undisturbed run {result['tasks_differing_from_undisturbed']}; "
        f"in an unexpected state {result['tasks_in_unexpected_state']}; duplicates absorbed {result['duplicates_absorbed_kafka']} "
        f"(Kafka records beyond the distinct events); caught up {result['catch_up_seconds_after_workload']}s after the workload"
    )


def main(argv=None) -> int:
    from devstack.private import private_stack
    from streams.logs import setup_logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", choices=sorted(PLANS), default="full",
                        help="full (make chaos; Tansu on s3 storage), short (make test's), broker-restart (make test's, s3)")  # fmt: skip
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    logging.getLogger("celery").setLevel(logging.ERROR)
    plan = PLANS[args.plan]
    run_dir = Path(tempfile.mkdtemp(prefix="chaos-"))
    with private_stack(run_dir, prefix="celery-monitor-chaos", storage=plan.storage) as stack:
        settings = stack.settings.replace(cluster=f"chaos-{stack.settings.app_id[-6:]}")
        pipeline = Pipeline(settings, run_dir / "logs")
        try:
            result = run_chaos(pipeline, stack, plan)
        except PipelineError as exc:
            print(f"[chaos] FAILED: {exc}\nlogs in {run_dir / 'logs'}", file=sys.stderr)
            return 1
        finally:
            pipeline.stop()
            pipeline.cleanup_broker()
    print(summary(result))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"chaos-{args.plan}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"[chaos] wrote {out / f'chaos-{args.plan}.json'}; logs in {run_dir / 'logs'}")
    ok = result["events_lost"] == 0 and result["tasks_differing_from_undisturbed"] == 0 and result["tasks_in_unexpected_state"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
