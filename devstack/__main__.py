"""python -m devstack {up,down,status,logs,env}: the local stack behind `make up` / `make down`.

Run directory (pid files, logs, data): $RUN_DIR, default ./.run (git-ignored).
Ports come from the pipeline settings (KAFKA_BOOTSTRAP, CLICKHOUSE_PORT) plus
CLICKHOUSE_HTTP_PORT (8123), RABBITMQ_PORT (5672), REDIS_PORT (6379) and S3_PORT (9010).
TANSU_STORAGE=memory (default: fast, nothing survives a Tansu restart) or s3 (Tansu's log in a
bucket of an S3 server of our own, moto: a broker restart loses nothing; slower, see
docs/operations.md). `python -m devstack env` prints the settings the stack's processes use
(eval it in a shell to run `celery-monitor` against the stack by hand).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from streams.config import Settings

from . import DEV_ENV, dev_settings, services
from .services import StackError, port_open

STORAGES = ("memory", "s3")


def run_dir() -> Path:
    return Path(os.environ.get("RUN_DIR", ".run")).resolve()


def ports(settings: Settings) -> dict[str, int]:
    return {
        "tansu": int(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]),
        "clickhouse": settings.clickhouse_port,
        "clickhouse_http": int(os.environ.get("CLICKHOUSE_HTTP_PORT", "8123")),
        "rabbitmq": int(os.environ.get("RABBITMQ_PORT", "5672")),
        "redis": int(os.environ.get("REDIS_PORT", "6379")),
        "s3": int(os.environ.get("S3_PORT", "9010")),
    }


def tansu_storage() -> str:
    storage = os.environ.get("TANSU_STORAGE", "memory")
    if storage not in STORAGES:
        raise StackError(f"TANSU_STORAGE={storage!r}: expected one of {', '.join(STORAGES)}")
    return storage


def say(msg: str) -> None:
    print(f"[devstack] {msg}", flush=True)


def start_brokers(rd: Path, p: dict) -> list[str]:
    """RabbitMQ and Redis: used as they are when running; installed and started when absent."""
    started = []
    for name, factory in (("rabbitmq", services.rabbitmq), ("redis", services.redis)):
        service = services.Service(name, rd, p[name])
        if service.pid():
            say(f"{name}: running (ours, pid {service.pid()})")
        elif port_open(p[name]):
            say(f"{name}: running on 127.0.0.1:{p[name]} (not ours: used, never stopped)")
        else:
            service, argv, env = factory(rd, p[name])
            service.start(argv, env=env, timeout=90)
            started.append(name)
            say(f"{name}: started on 127.0.0.1:{p[name]} (pid {service.pid()})")
    return started


def start_tansu(rd: Path, port: int, s3: services.S3 | None = None) -> bool:
    service, argv, env = services.tansu(rd, port, s3)
    started = service.start(argv, env=env, timeout=15)
    storage = "memory storage" if s3 is None else f"s3 storage, bucket {s3.bucket} on {s3.endpoint}"
    say(f"tansu: {'started' if started else 'running'} on 127.0.0.1:{port} (pid {service.pid()}, {storage})")
    return started


def start_clickhouse(rd: Path, tcp: int, http: int) -> bool:
    service, argv, env, ready = services.clickhouse(rd, tcp, http)
    started = service.start(argv, env=env, cwd=rd / "clickhouse", ready=ready, timeout=30)
    say(f"clickhouse: {'started' if started else 'running'} on 127.0.0.1:{tcp} (http {http}, pid {service.pid()})")
    return started


def prepare(settings: Settings, attempts: int = 20) -> None:
    """Topics (all, up front) and the ClickHouse schema; both idempotent."""
    from streams.migrate import migrate
    from streams.clickhouse import connect
    from streams.topics import ensure_topics

    for attempt in range(attempts):
        try:
            created = ensure_topics(settings).created
            break
        except Exception as exc:  # noqa: BLE001 - the broker may still be settling
            if attempt == attempts - 1:
                raise StackError(f"could not create topics on {settings.kafka_bootstrap}: {exc}") from exc
            time.sleep(0.5)
    say(f"topics: {len(created)} created ({settings.topic_partitions} partitions each)")
    applied = migrate(connect(settings, with_database=False).execute, settings.clickhouse_database)
    say(f"clickhouse schema: {'applied ' + ', '.join(applied) if applied else 'up to date'}")


def up(settings: Settings) -> list[str]:
    """Start what is missing; returns the names of the services this call started."""
    rd, p = run_dir(), ports(settings)
    started = start_brokers(rd, p)
    s3 = None
    if tansu_storage() == "s3":
        s3 = services.s3(rd, p["s3"])
        if s3.start():
            started.append("s3")
    if start_tansu(rd, p["tansu"], s3):
        started.append("tansu")
    if start_clickhouse(rd, p["clickhouse"], p["clickhouse_http"]):
        started.append("clickhouse")
    prepare(settings)
    say(f"stack is up (run dir {rd}); `make down` stops what was started here")
    return started


def down(settings: Settings, names=("clickhouse", "tansu", "s3", "redis", "rabbitmq", "dockerd")) -> None:
    """Stop the services we started (by their pid files); never anything else."""
    from .docker import Engine

    rd, p = run_dir(), ports(settings)
    for name in names:
        if name == "dockerd":
            stopped = Engine(rd).stop()  # `make image` / the image test's engine
        else:
            stopped = services.Service(name, rd, p[name]).stop()
        if stopped:
            say(f"{name}: stopped")


def image() -> None:
    """`make image`: celery-stream-monitor:local from the Dockerfile. With an engine of the user's
    (DOCKER_HOST, or /var/run/docker.sock) and the Dockerfile's public bases; else with a dockerd of
    our own (stopped by `make down`) and local bases built from Debian packages."""
    from .docker import IMAGE, Engine, build_image

    engine = Engine(run_dir())
    bases = os.environ.get("IMAGE_BASES", "")
    if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
        engine.env = lambda: dict(os.environ)  # the user's engine, as their docker CLI finds it
        bases = bases or "public"
    else:
        if engine.start():
            say(f"dockerd: started (socket {engine.socket}; `make down` stops it)")
        bases = bases or "local"
    seconds = build_image(engine, bases=bases, log=say)
    say(f"image {IMAGE} built in {seconds:.0f}s ({bases} bases); run it with DOCKER_HOST={engine.host if bases == 'local' else '<yours>'}")


def status(settings: Settings) -> int:
    rd, p = run_dir(), ports(settings)
    missing = 0
    for name in ("tansu", "clickhouse", "rabbitmq", "redis"):
        service = services.Service(name, rd, p[name])
        pid = service.pid()
        listening = port_open(p[name])
        owner = f"ours, pid {pid}" if pid else ("not ours" if listening else "-")
        state = "up" if listening else "DOWN"
        missing += not listening
        print(f"{name:<11} {state:<5} 127.0.0.1:{p[name]:<6} {owner}")
    s3 = services.Service("s3", rd, p["s3"])
    if s3.pid():  # only with TANSU_STORAGE=s3
        print(f"{'s3':<11} {'up' if port_open(p['s3']) else 'DOWN':<5} 127.0.0.1:{p['s3']:<6} ours, pid {s3.pid()} (Tansu's storage)")
    return 1 if missing else 0


def logs(settings: Settings, lines: int) -> None:
    for path in sorted((run_dir() / "logs").glob("*.log")):
        print(f"==> {path} <==")
        print(services.log_tail(path, lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "logs", "prepare", "env", "image"))
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args(argv)
    if args.command == "env":
        for name, value in DEV_ENV.items():
            if name not in os.environ:
                print(f"export {name}={value}")
        return
    settings = dev_settings()
    try:
        if args.command == "up":
            up(settings)
        elif args.command == "down":
            down(settings)
        elif args.command == "status":
            sys.exit(status(settings))
        elif args.command == "logs":
            logs(settings, args.lines)
        elif args.command == "prepare":
            prepare(settings)
        elif args.command == "image":
            image()
    except StackError as exc:
        print(f"[devstack] ERROR: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
