"""The harness: run the pipeline's processes (bridge, streams worker, UI, a Celery worker) on a
stack and wait on ClickHouse.

Shared by `make demo`, the integration tests, `make chaos` and the benchmarks, so they exercise
exactly what users run (`python -m bridge`, `python -m streams worker`, ...). Each process is
started with its own session and stopped by its pid.
"""

from __future__ import annotations

import os
import signal as signals
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from streams.config import Settings
from streams.engine.states import FINAL_STATES

ROOT = Path(__file__).resolve().parent.parent


class PipelineError(RuntimeError):
    pass


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict
    log_path: Path
    popen: subprocess.Popen | None = None
    cwd: Path = ROOT  # the repository; a test of the installed package runs elsewhere
    signalled: int | None = None  # a signal we sent on purpose: its exit is not a failure

    def start(self) -> "Proc":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.cwd, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal(self, sig: int, group: bool = False) -> None:
        """Send ``sig`` to this process (``group``: and its children, e.g. a Celery pool)."""
        if self.alive():
            self.signalled = sig
            if group:
                os.killpg(self.pid, sig)  # started with start_new_session: its group id is its pid
            else:
                os.kill(self.pid, sig)

    def stop(self, timeout: float = 20.0, sig: int = signals.SIGTERM) -> int | None:
        """Stop the process and everything it started (its own session: group id = its pid).

        The group matters: a Celery worker's pool children, and a process started through a
        wrapper that forks (faketime), would outlive a signal to the leader alone."""
        if self.popen is None:
            return None
        if self.alive():
            self._signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signals.SIGKILL)
                self.popen.wait(10)
        self._signal_group(signals.SIGKILL)  # whatever of the group is left (none, normally)
        return self.popen.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


def settings_env(settings: Settings) -> dict:
    """The environment that hands `settings` to a child process (same names as documented)."""
    return {**settings.environ(), "PYTHONUNBUFFERED": "1"}


@dataclass
class Pipeline:
    settings: Settings
    log_dir: Path
    run_id: str = field(default_factory=lambda: uuidlib.uuid4().hex[:8])
    procs: list[Proc] = field(default_factory=list)
    client: object = None  # the Celery producer app of this run (set when the worker is up)

    @property
    def worker_hostname(self) -> str:
        return f"demo-{self.run_id}@{socket.gethostname()}"

    @property
    def task_queue(self) -> str:
        return f"celery-monitor-demo-{self.run_id}"

    def __post_init__(self) -> None:
        # Each run is its own Faust application (fresh consumer group and changelogs), so demo
        # runs never share table state; restarts on one app id are tested in
        # tests/integration/test_streams_correctness.py.
        if self.settings.app_id == Settings.model_fields["app_id"].default:
            self.settings = self.settings.replace(app_id=f"{self.settings.app_id}-{self.run_id}")

    def _proc(self, name: str, argv: list[str], extra_env: dict | None = None, cwd: Path | None = None) -> Proc:
        env = settings_env(self.settings)
        env.update(extra_env or {})
        same = sum(1 for p in self.procs if p.name == name)  # a restarted process gets its own log
        suffix = f"-{same}" if same else ""
        proc = Proc(name, argv, env, self.log_dir / f"{name}-{self.run_id}{suffix}.log", cwd=cwd or ROOT).start()
        self.procs.append(proc)
        return proc

    def start_bridge(self, timeout: float = 30.0) -> Proc:
        proc = self._proc("bridge", [sys.executable, "-m", "bridge"])
        self.wait_for_log(proc, "consuming Celery events", timeout)
        return proc

    def start_streams(self, name: str = "streams", **env: str) -> Proc:
        return self._proc(name, [sys.executable, "-m", "streams", "worker"], env)

    def start_celery_worker(self, timeout: float = 60.0, hostname: str | None = None, clock_offset: float = 0.0,
                            extra_args: tuple[str, ...] = (), extra_env: dict | None = None) -> Proc:  # fmt: skip
        """A real Celery worker (-E) on this run's queue; ``clock_offset`` seconds shifts its wall
        clock (Debian's faketime; monotonic time left alone, as Celery's timers need it);
        ``extra_args`` go to ``celery worker`` (e.g. ``--without-heartbeat``, ``-P threads``)."""
        hostname = hostname or self.worker_hostname
        argv = [
            sys.executable, "-m", "celery", "-A", "demo.tasks", "worker", "-E", "-c", "2",
            "-Q", self.task_queue, "-n", hostname, "--without-gossip", "--without-mingle", "-l", "warning", *extra_args,
        ]  # fmt: skip
        env = {"DEMO_QUEUE": self.task_queue, **(extra_env or {})}
        if clock_offset:
            argv = ["faketime", "-f", f"{clock_offset:+g}s", *argv]
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        proc = self._proc("celery-worker", argv, env)
        from demo.tasks import make_client

        self.client = make_client(self.settings.broker_url, self.task_queue, self.settings.bridge_event_exchange)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise PipelineError(f"Celery worker exited: {proc.tail()}")
            if self.client.control.ping(destination=[hostname], timeout=0.5):
                return proc
        raise PipelineError(f"Celery worker not ready within {timeout}s: {proc.tail()}")

    def wait_for_log(self, proc: Proc, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in proc.log_text():
                return
            if not proc.alive():
                raise PipelineError(f"{proc.name} exited while starting:\n{proc.tail()}")
            time.sleep(0.1)
        raise PipelineError(f"{proc.name} did not log {text!r} within {timeout}s:\n{proc.tail()}")

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.signalled is None and proc.name != "celery-worker" and proc.popen.poll() not in (None, 0, -15):
                raise PipelineError(f"{proc.name} died (exit {proc.popen.returncode}):\n{proc.tail()}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def cleanup_broker(self) -> None:
        """Delete the demo's own queues (never anything else) from the Celery broker."""
        delete_queues(self.settings.broker_url, [self.task_queue, self.settings.bridge_queue_name])


REDIS_PRIORITY_STEPS = (3, 6, 9)  # kombu.transport.redis.PRIORITY_STEPS without 0 (the list itself)
REDIS_SEP = "\x06\x16"  # kombu.transport.redis.Channel.sep


def delete_queues(broker_url: str, names: list[str]) -> None:
    """Delete these queues (and nothing else) from a broker, with the exchange named like each
    queue (Celery's default for a task queue) where nothing else is bound to it: AMQP queues and
    exchanges, or on Redis the lists (priority sub-queues included) and kombu's binding sets,
    which a delete through a new connection leaves behind."""
    from kombu import Connection, Queue

    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in names:
            try:
                Queue(name, channel=channel).delete()
            except Exception:  # noqa: BLE001 - already gone, or a transport without queues
                channel = conn.channel()  # AMQP closes a channel on a failed delete
        if conn.transport.driver_type == "amqp":
            for name in names:
                try:  # if_unused: an exchange another queue is still bound to stays
                    channel.exchange_delete(exchange=name, if_unused=True)
                except Exception:  # noqa: BLE001 - in use, or never declared
                    channel = conn.channel()
        if conn.transport.driver_type == "redis":
            client = channel.client
            for name in names:
                client.delete(
                    name, *(f"{name}{REDIS_SEP}{p}" for p in REDIS_PRIORITY_STEPS),
                    f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}",
                )  # fmt: skip


def wait_for_tasks(client, settings: Settings, uuids: list[str], pipeline: Pipeline | None = None, timeout: float = 120.0) -> dict[str, dict]:
    """Poll ClickHouse until every task has a final state; returns uuid -> record."""
    db = settings.clickhouse_database
    deadline = time.monotonic() + timeout
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        if pipeline:
            pipeline.check_alive()
        result, types = client.execute(
            f"SELECT * FROM {db}.tasks FINAL WHERE cluster = %(cluster)s AND uuid IN %(uuids)s",
            {"cluster": settings.cluster, "uuids": tuple(uuids)},
            with_column_types=True,
        )
        names = [n for n, _ in types]
        rows = {r["uuid"]: r for r in (dict(zip(names, row)) for row in result)}
        if len(rows) == len(uuids) and all(r["state"] in FINAL_STATES for r in rows.values()):
            return rows
        time.sleep(0.5)
    pending = {u: rows.get(u, {}).get("state") for u in uuids if rows.get(u, {}).get("state") not in FINAL_STATES}
    raise PipelineError(f"pipeline did not catch up within {timeout}s; not final: {pending}")


def wait_for_worker(client, settings: Settings, hostname: str, state: str, timeout: float = 60.0) -> dict:
    db = settings.clickhouse_database
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        result, types = client.execute(
            f"SELECT * FROM {db}.workers FINAL WHERE cluster = %(cluster)s AND hostname = %(hostname)s",
            {"cluster": settings.cluster, "hostname": hostname},
            with_column_types=True,
        )
        if result:
            row = dict(zip([n for n, _ in types], result[0]))
            if row["state"] == state:
                return row
        time.sleep(0.5)
    raise PipelineError(f"worker {hostname} not {state} within {timeout}s (last: {row})")
