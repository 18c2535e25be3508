"""python -m streams {worker,sink,migrate,topics,replay,report,retention,ui,config}"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .config import Settings, add_arguments, settings_table
from .listen import SettingError
from .logs import setup_logging

log = logging.getLogger("streams")

KAFKA = ["kafka_bootstrap", "kafka_flavor", "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
         "kafka_sasl_password", "kafka_ssl_cafile", "topic_partitions", "topic_task_events", "topic_worker_events",
         "topic_task_states", "topic_worker_states", "topic_dead_letters", "topic_alerts"]  # fmt: skip
CLICKHOUSE = ["clickhouse_host", "clickhouse_port", "clickhouse_user", "clickhouse_password",
              "clickhouse_database", "clickhouse_secure"]  # fmt: skip
LAYOUT = ["clickhouse_cluster", "clickhouse_replicated"]
SINK = ["sink_group", "sink_batch_rows", "sink_batch_seconds", "sink_min_insert_interval", "session_timeout"]
UI = ["ui_host", "ui_port", "ui_basic_auth", "ui_token", "ui_row_limit", "ui_page_size", "ui_query_timeout",
      "ui_refresh_seconds"]  # fmt: skip
APP = ["app_id", "store", "data_dir", "session_timeout", "worker_expiry_factor", "worker_drift_threshold", "sink", "web_port",
       "web_host", "streams_metrics_addr", "task_retention", "alert_failure_window", "alert_failure_threshold"]  # fmt: skip


def cmd_worker(settings: Settings, args) -> None:
    from .app import create_app
    from .topics import ensure_topics

    # The app's changelogs and internal topics (a new STREAMS_APP_ID has none yet) with the
    # partition count of its sources: a broker that auto-creates them (Tansu: 4 partitions)
    # would split what must be co-partitioned.
    created = ensure_topics(settings)
    if created:
        log.info("created topics: %s", ", ".join(created))
    app = create_app(settings)
    argv = ["streams", "worker", "-l", args.log_level or "info"]
    web = ["--web-host", settings.web_host, "--web-port", str(settings.web_port)]
    argv += web if settings.web_port else ["--without-web"]
    sys.argv = argv
    if settings.sink != "process":
        app.main()
        return
    # The sink in its own process: as a thread it shares the worker's GIL, and catching up on
    # 200k events took 2.7x as long (README, "Sink"). Its crash is still the worker's.
    from .sink.child import SinkChild

    child = SinkChild(settings)
    child.start()
    try:
        app.main()
    except SystemExit as exc:
        if child.crashed and not exc.code:
            raise SystemExit(1) from None
        raise
    finally:
        child.stop()
    if child.crashed:
        raise SystemExit(1)


def cmd_sink(settings: Settings, args) -> None:
    from .sink.consumer import ClickHouseSink

    sink = ClickHouseSink(settings)
    signal.signal(signal.SIGTERM, lambda *_: sink.stop())
    signal.signal(signal.SIGINT, lambda *_: sink.stop())
    if args.stop_with_pid:
        from .sink.child import stop_when_parent_goes

        stop_when_parent_goes(args.stop_with_pid, sink.stop)
    sink.run()


def cmd_migrate(settings: Settings, args) -> None:
    from .migrate import ClusterLayout, load_migrations, migrate, statements_for
    from .sink.clickhouse import connect

    layout = None
    if settings.clickhouse_cluster:
        replicated = settings.clickhouse_replicated
        layout = ClusterLayout(settings.clickhouse_cluster, replicated=replicated, on_cluster=replicated)
    if args.print_sql:
        for migration in load_migrations(settings.clickhouse_database):
            print(f"-- {migration.id}_{migration.name}")
            for statement in statements_for(migration, layout):
                print(statement + ";\n")
        return
    client = connect(settings, with_database=False)
    applied = migrate(client.execute, settings.clickhouse_database, layout=layout)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


def cmd_retention(settings: Settings, args) -> None:
    from .retention import drop_expired
    from .sink.clickhouse import connect

    client = connect(settings)
    for statement in drop_expired(client.execute, settings.clickhouse_database, args.keep_months, dry_run=args.dry_run):
        print(("would run: " if args.dry_run else "ran: ") + statement)


def cmd_topics(settings: Settings, args) -> None:
    from .topics import ensure_topics

    created = ensure_topics(settings)
    print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")


def cmd_replay(settings: Settings, args) -> None:
    from .replay import replay

    sys.exit(replay(args.files, at=args.at, expiry_factor=settings.worker_expiry_factor))


def cmd_report(settings: Settings, args) -> None:
    import time

    from .report import render, run_report
    from .sink.clickhouse import connect

    client = connect(settings)

    def execute(sql: str, params: dict):
        rows, types = client.execute(sql, params, with_column_types=True)
        return [name for name, _ in types], rows

    since = time.time() - args.window if args.window else 0
    answers = run_report(execute, settings.clickhouse_database, {"cluster": args.cluster or "", "name": args.name or "", "since": since})
    print(render(answers, args.format))
    if args.plot:
        from pathlib import Path

        from .plots import write_plots

        for path in write_plots(answers, Path(args.plot)):
            print(f"wrote {path}", file=sys.stderr)


def cmd_ui(settings: Settings, args) -> None:
    from .ui.server import UIConfigError, serve

    try:
        serve(settings)
    except UIConfigError as exc:
        print(f"streams ui: {exc}", file=sys.stderr)
        sys.exit(2)


def cmd_config(settings: Settings, args) -> None:
    print(settings_table())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m streams", description="Celery monitoring streams app")
    parser.add_argument("--log-level", default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the Faust worker (agents, tables, timer; the sink as a child process unless STREAMS_SINK=off)")
    add_arguments(p, KAFKA + APP + CLICKHOUSE + ["sink_group", "sink_batch_rows", "sink_batch_seconds", "sink_min_insert_interval"])
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("sink", help="run only the ClickHouse sink (its own consumer group)")
    add_arguments(p, KAFKA + CLICKHOUSE + SINK)
    p.add_argument("--stop-with-pid", type=int, default=0, help=argparse.SUPPRESS)  # set by `streams worker` for its child
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("migrate", help="apply sql/migrations to ClickHouse (idempotent)")
    p.add_argument("--print", dest="print_sql", action="store_true", help="print the statements (for the chosen layout) instead of running them")
    add_arguments(p, CLICKHOUSE + LAYOUT)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("topics", help="create every topic (and table changelog) up front")
    add_arguments(p, KAFKA + ["app_id"])
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("replay", help="fold recorded events with the engine and print the records")
    p.add_argument("files", nargs="+", help="JSON-lines files ('-' = stdin, .gz read as gzip)")
    p.add_argument(
        "--at", type=float, default=None,
        help="judge worker liveness at this epoch time on the monitor's clock (the receive times: local_received, "
        "recv_time, a pack's received_at; default: the newest receive time read, per cluster)",
    )  # fmt: skip
    add_arguments(p, ["worker_expiry_factor"])
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("retention", help="drop month partitions of events older than --keep-months")
    p.add_argument("--keep-months", type=int, required=True, help="months kept, the current one included")
    p.add_argument("--dry-run", action="store_true", help="print the statements only")
    add_arguments(p, CLICKHOUSE)
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("report", help="answer the analytics questions from ClickHouse")
    p.add_argument("--cluster", default="", help="only this cluster (default all)")
    p.add_argument("--name", default="", help="only tasks of this name, e.g. proj.tasks.add (default all)")
    p.add_argument("--window", type=float, default=0, help="only tasks first seen in the last N seconds (0 = all)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    add_arguments(p, CLICKHOUSE)
    p.add_argument("--plot", metavar="DIR", help="also write PNG charts (throughput, runtime percentiles, failure rate) to DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ui", help="serve the web UI (tasks, a task's attempts, workers, analytics) from ClickHouse")
    add_arguments(p, CLICKHOUSE + UI)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("config", help="print every setting: env variable, flag, default")
    p.set_defaults(func=cmd_config)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    settings = Settings.load(args)
    if args.command in ("worker", "sink", "ui"):
        log.info("%s starting: settings=%s", args.command, settings.as_dict())
    try:
        args.func(settings, args)
    except SettingError as exc:  # a setting to change, not a crash: one line, no traceback
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
