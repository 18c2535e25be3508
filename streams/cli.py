"""`celery-monitor`: one command line for every process and tool of the pipeline (click).

    celery-monitor bridge [queues|forget]   Celery events -> Kafka (and the bridge queue's lifecycle)
    celery-monitor worker                   the streams worker (Faust; starts the ClickHouse sink)
    celery-monitor sink                     the ClickHouse sink alone
    celery-monitor ui                       the web UI
    celery-monitor migrate                  apply the ClickHouse schema
    celery-monitor topics [--plan]          create/fix the Kafka topics (or print the plan)
    celery-monitor init                     topics then migrate: what a deployment runs first
    celery-monitor check                    Kafka, ClickHouse and the Celery broker against the plan
    celery-monitor report | replay | retention | config

Every setting is an environment variable and a flag of the commands that use it
(docs/configuration.md); ``python -m streams ...`` and ``python -m bridge`` run the same commands.
A bad setting is a one-line error naming the variable, exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import click

from pydantic import SecretStr

from .config import ConfigError, Settings, field_env, field_flag, fields_of, unknown_variables
from .listen import SettingError
from .logs import setup_logging

log = logging.getLogger("celery_monitor")
DISTRIBUTION = "celery-stream-monitor"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FAUST_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "crit"}  # faust worker -l


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # a source tree without an installed distribution
        return "unknown"


def setting_options(*groups: str, only: tuple[str, ...] = (), aliases: dict[str, str] | None = None) -> Callable:
    """Click options for the settings of some groups (and single settings): ``--kafka-bootstrap``
    etc., each None unless given, so the environment and the defaults apply."""
    names = fields_of(*groups) + [n for n in only if n not in fields_of(*groups)]
    # Passwords and tokens are environment variables only: a flag would show them in `ps`.
    names = [n for n in names if Settings.model_fields[n].annotation is not SecretStr]
    aliases = aliases or {}

    def decorate(command):
        for name in reversed(names):
            info = Settings.model_fields[name]
            flags = [field_flag(name)] + ([aliases[name]] if name in aliases else [])
            command = click.option(*flags, name, default=None, metavar="VALUE",
                                   help=f"{info.description} [env {field_env(name)}]")(command)  # fmt: skip
        return command

    return decorate


def load_settings(params: dict[str, Any], **overrides) -> Settings:
    """The command's settings (flags given > environment > defaults); a bad value exits with 2."""
    for name in unknown_variables(os.environ):
        log.warning("environment variable %s is not a setting of this product: ignored", name)
    try:
        return Settings.load({k: v for k, v in params.items() if k in Settings.model_fields}, **overrides)
    except ConfigError as exc:
        click.echo(f"celery-monitor: {exc}", err=True)
        sys.exit(2)


def run_guarded(func: Callable[[], Any]) -> Any:
    """A setting that cannot be used where it matters (a taken port...) is one line, exit 2; a
    dependency that refuses or cannot be reached at start is one line, exit 1."""
    try:
        return func()
    except (SettingError, ConfigError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - only the dependency failures below are turned into a line
        reason = dependency_failure(exc)
        if reason is None:
            raise
        log.error("%s", reason)
        sys.exit(1)


def dependency_failure(exc: BaseException) -> str | None:
    """One line for a refusal of Kafka or ClickHouse (bad credentials, unreachable at start), else None."""
    from clickhouse_driver import errors as ch_errors
    from confluent_kafka import KafkaException

    from .errors import DependencyError

    if isinstance(exc, DependencyError):
        return str(exc)
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else exc
        text = error.str() if hasattr(error, "str") else str(error)
        return f"Kafka: {text} (KAFKA_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL and the SASL/TLS settings say where and how)"
    if isinstance(exc, ch_errors.ServerException):
        first = str(exc.message).strip().splitlines()[0] if getattr(exc, "message", None) else str(exc).splitlines()[0]
        return f"ClickHouse refused (code {exc.code}): {first}"
    if isinstance(exc, (ch_errors.NetworkError, ch_errors.SocketTimeoutError)):
        return f"ClickHouse unreachable: {exc} (CLICKHOUSE_HOST, CLICKHOUSE_PORT, CLICKHOUSE_SECURE)"
    return None


@click.group(context_settings=CONTEXT)
@click.version_option(package_version(), "--version", "-V", prog_name="celery-monitor", message="%(prog)s %(version)s")
@click.option("--log-level", default=None, type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="DEBUG, INFO (default), WARNING, ERROR [env LOG_LEVEL]")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """Celery monitoring and analytics as a stream pipeline: broker -> Kafka -> Faust -> ClickHouse."""
    level = (log_level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        click.echo(f"celery-monitor: LOG_LEVEL={level!r}: must be one of {', '.join(LOG_LEVELS)}", err=True)
        sys.exit(2)
    ctx.obj = {"log_level": level}
    setup_logging(level)


# -- bridge -----------------------------------------------------------------------------------
@cli.group(invoke_without_command=True, context_settings=CONTEXT)
@setting_options("kafka", "broker", "bridge", only=("topic_task_events", "topic_worker_events", "topic_dead_letters",
                 "topic_bridge_status", "topic_queue_lengths"), aliases={"broker_url": "--broker"})  # fmt: skip
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="cluster file (TOML): several clusters in one process (bridge/clusters.py)")  # fmt: skip
@click.option("--bridge-id", default=None, help="id on every pack (default host:pid)")
@click.pass_context
def bridge(ctx: click.Context, config_file: str | None, bridge_id: str | None, **params) -> None:
    """Celery events from the broker to Kafka (acked only after Kafka acked)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj["bridge_params"] = {**params, "config_file": config_file}
        return
    from bridge.run import run

    settings = load_settings(params)
    sys.exit(run_guarded(lambda: run(settings, config_file, bridge_id)))


def lifecycle_options(command):
    """What `bridge queues` / `bridge forget` take after their name too (the bridge's own options
    apply before it)."""
    command = click.option("--bridge-queue", "bridge_queue", default=None, help="the bridge queue [env BRIDGE_QUEUE]")(command)
    command = click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
                           help="cluster file (TOML) of the bridges")(command)  # fmt: skip
    return click.option("--broker", "broker_url", default=None, help="Celery broker URL [env CELERY_BROKER_URL]")(command)


def _lifecycle(ctx: click.Context, params: dict, **extra) -> tuple[Any, Settings]:
    from types import SimpleNamespace

    merged = {**ctx.obj.get("bridge_params", {}), **{k: v for k, v in params.items() if v is not None}}
    settings = load_settings(merged)
    return SimpleNamespace(config=merged.get("config_file"), **extra), settings


@bridge.command("queues", context_settings=CONTEXT)
@setting_options("clickhouse")
@lifecycle_options
@click.option("--cluster", "clusters", multiple=True, help="also check celery-monitor.bridge.NAME (repeatable)")
@click.option("--queue", "queues", multiple=True, help="also check this queue name (repeatable)")
@click.option("--no-history", is_flag=True, help="do not read the bridge queues seen so far from ClickHouse")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def bridge_queues(ctx, clusters, queues, no_history, fmt, **params) -> None:
    """This product's bridge queues (AMQP): depth, consumers, configured or only known from history."""
    from bridge.lifecycle import cmd_queues

    args, settings = _lifecycle(ctx, params, clusters=list(clusters), queues=list(queues), no_history=no_history, format=fmt)
    sys.exit(cmd_queues(args, settings))


@bridge.command("forget", context_settings=CONTEXT)
@click.option("--cluster", "forget_cluster", required=True, help="the retired cluster's name")
@click.option("--queue", "queue_name", default="", help="the queue, when not celery-monitor.bridge.<cluster>")
@click.option("--dry-run", is_flag=True, help="check and say what would be deleted, delete nothing")
@lifecycle_options
@click.pass_context
def bridge_forget(ctx, forget_cluster, queue_name, dry_run, **params) -> None:
    """Delete a retired cluster's bridge queue (refused while it has a consumer)."""
    from bridge.lifecycle import cmd_forget

    args, settings = _lifecycle(ctx, params, forget_cluster=forget_cluster, queue_name=queue_name, dry_run=dry_run)
    sys.exit(cmd_forget(args, settings))


# -- streams worker, sink, UI ---------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "topics", "streams", "clickhouse", "sink")
@click.pass_context
def worker(ctx: click.Context, **params) -> None:
    """The streams worker: task and worker state (Faust), alerts; the ClickHouse sink as a child process."""
    settings = load_settings(params)
    log.info("worker starting: settings not at their defaults: %s", settings.as_dict(changed_only=True))
    run_guarded(lambda: _run_worker(settings, ctx.obj["log_level"]))


def _run_worker(settings: Settings, log_level: str | None) -> None:
    from .app import create_app
    from .topics import ensure_topics, partition_mismatches

    if settings.store.startswith("rocksdb"):
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            raise ConfigError("STREAMS_STORE=rocksdb:// needs the rocksdb extra: pip install 'celery-stream-monitor[rocksdb]' "
                              "(the image has it)") from None  # fmt: skip
    mismatched = partition_mismatches(settings)
    if mismatched:
        raise ConfigError(f"TOPIC_PARTITIONS={settings.topic_partitions} but {mismatched}: the worker's tables are "
                          "partitioned as its sources; set TOPIC_PARTITIONS to the topics' count (`celery-monitor check`)")  # fmt: skip

    # The app's changelogs and internal topics (a new STREAMS_APP_ID has none yet), planned as
    # `celery-monitor topics` plans them: Faust would create them without our configuration, and a
    # broker that auto-creates (Tansu: 4 partitions) would split what must be co-partitioned.
    created = ensure_topics(settings, fix=False).created
    if created:
        log.info("created topics: %s", ", ".join(created))
    app = create_app(settings)
    argv = ["celery-monitor", "worker", "-l", FAUST_LEVELS[log_level or "INFO"]]
    argv += ["--web-host", settings.web_host, "--web-port", str(settings.web_port)] if settings.web_port else ["--without-web"]
    sys.argv = argv  # Faust's worker reads its own command line
    if settings.sink != "process":
        app.main()
        return
    # The sink in its own process: as a thread it shares the worker's GIL, and catching up on
    # 200k events took 2.7x as long (docs/benchmarks.md). Its crash is still the worker's.
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


@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "topics", "clickhouse", "sink", only=("session_timeout",))
@click.option("--stop-with-pid", type=int, default=0, hidden=True)  # set by `worker` for its child
def sink(stop_with_pid: int, **params) -> None:
    """Only the ClickHouse sink (its own consumer group): insert, then commit."""
    from .sink.consumer import ClickHouseSink

    settings = load_settings(params)
    log.info("sink starting: settings not at their defaults: %s", settings.as_dict(changed_only=True))
    consumer = ClickHouseSink(settings)
    run_guarded(consumer.serve_health)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    if stop_with_pid:
        from .sink.child import stop_when_parent_goes

        stop_when_parent_goes(stop_with_pid, consumer.stop)
    run_guarded(consumer.run)


@cli.command(context_settings=CONTEXT)
@setting_options("clickhouse", "ui", only=("control_url", "control_timeout"))
def ui(**params) -> None:
    """The web UI: tasks, a task's attempts, workers, analytics (read-only, over ClickHouse)."""
    from .ui.server import UIConfigError, serve

    settings = load_settings(params)
    log.info("ui starting: settings not at their defaults: %s", settings.as_dict(changed_only=True))
    try:
        run_guarded(lambda: serve(settings))
    except UIConfigError as exc:
        click.echo(f"celery-monitor ui: {exc}", err=True)
        sys.exit(2)


@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "topics", "notify", only=("session_timeout",))
@click.option("--check", "check_only", is_flag=True, help="only read and check the rules file, print the rules, exit")
def notify(check_only: bool, **params) -> None:
    """The alerts topic delivered through Apprise (Slack, Teams, e-mail, webhooks...) by the rules
    in NOTIFY_RULES; offsets committed after delivery (docs/notify.md)."""
    from .notify import Notifier, RulesError, load_rules_file

    settings = load_settings(params)
    try:
        rules = load_rules_file(settings.notify_rules)
    except RulesError as exc:
        click.echo(f"celery-monitor notify: {exc}", err=True)
        sys.exit(2)
    if check_only:
        for rule in rules:
            click.echo(f"{rule.name}: alerts {', '.join(rule.alerts)}; clusters {', '.join(rule.clusters)}; tasks {', '.join(rule.tasks)}"
                       f"{'; not ' + ', '.join(rule.exclude_tasks) if rule.exclude_tasks else ''}; {len(rule.urls)} URL(s); "
                       f"dedupe {rule.dedupe_seconds:g} s; at most {rule.rate_limit_per_minute}/min")  # fmt: skip
        return
    log.info("notify starting: settings not at their defaults: %s", settings.as_dict(changed_only=True))
    notifier = Notifier(settings, rules)
    run_guarded(notifier.serve_metrics)

    def stop(*_):
        notifier.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run_guarded(notifier.run)


@cli.command(context_settings=CONTEXT)
@setting_options("clickhouse", "ui")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio (an agent starts this command) or Streamable HTTP on UI_HOST:MCP_PORT/mcp with the UI's auth")
def mcp(transport: str, **params) -> None:
    """Read-only MCP server for agents: search tasks, a task with its attempts, failure groups,
    workers, queue lengths, the analytics questions (docs/mcp.md)."""
    from .mcp_server import serve_http, serve_stdio
    from .ui.server import UIConfigError

    settings = load_settings(params)
    try:
        run_guarded(lambda: serve_stdio(settings) if transport == "stdio" else serve_http(settings))
    except UIConfigError as exc:
        click.echo(f"celery-monitor mcp: {exc}", err=True)
        sys.exit(2)


@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "broker", "clickhouse", "control", only=("topic_audit", "bridge_event_exchange"))
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="cluster file (TOML, the bridge's format): the broker of each cluster; default CLUSTER + CELERY_BROKER_URL")
def control(config_file: str | None, **params) -> None:
    """Task control: revoke, terminate and retry tasks by query, for the UI's and API's operators
    (opt-in: needs CONTROL_SECRET; holds the broker credentials; audits every request; docs/control.md)."""
    from .control.service import serve

    settings = load_settings(params)
    log.info("control starting: settings not at their defaults: %s", settings.as_dict(changed_only=True))
    run_guarded(lambda: serve(settings, config_file))


@cli.command("hash-password", context_settings=CONTEXT)
@click.option("--stdin", "from_stdin", is_flag=True, help="read the password from standard input instead of asking")
def hash_password_command(from_stdin: bool) -> None:
    """Print a password hash (PBKDF2-SHA256) for a [users.<name>] entry of UI_USERS_FILE."""
    from .ui.auth import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        click.echo("celery-monitor hash-password: the password is empty", err=True)
        sys.exit(2)
    click.echo(hash_password(password))


# -- schema and topics --------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@setting_options("clickhouse")
@click.option("--print", "print_sql", is_flag=True, help="print the statements (for the chosen layout) instead of running them")
def migrate(print_sql: bool, **params) -> None:
    """Apply the ClickHouse schema shipped with this version (idempotent; schema_migrations)."""
    from .clickhouse import connect
    from .migrate import ClusterLayout, load_migrations, migrate as apply, statements_for

    settings = load_settings(params)
    layout = None
    if settings.clickhouse_cluster:
        replicated = settings.clickhouse_replicated
        layout = ClusterLayout(settings.clickhouse_cluster, replicated=replicated, on_cluster=replicated)
    if print_sql:
        for migration in load_migrations(settings.clickhouse_database):
            click.echo(f"-- {migration.id}_{migration.name}")
            for statement in statements_for(migration, layout):
                click.echo(statement + ";\n")
        return
    client = connect(settings, with_database=False)
    applied = run_guarded(lambda: apply(client.execute, settings.clickhouse_database, layout=layout))
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "topics", only=("app_id",))
@click.option("--plan", is_flag=True, help="print every topic as JSON (name, partitions, replication_factor, config); touch nothing")
def topics(plan: bool, **params) -> None:
    """Create every topic the pipeline uses (and table changelogs), and fix configs that may change."""
    from .topics import ensure_topics, plan_topics

    settings = load_settings(params)
    if plan:
        click.echo(json.dumps([p.as_json() for p in plan_topics(settings)], indent=2))
        return
    if _report_topics(run_guarded(lambda: ensure_topics(settings))):
        sys.exit(1)


def _report_topics(changes) -> bool:
    """What `topics` / `init` did; True when a topic is wrong in a way they must not change (the
    command then exits 1)."""
    click.echo(f"topics created: {', '.join(changes.created) or 'none (all exist)'}")
    for name, configs in changes.fixed.items():
        click.echo(f"topic {name}: set {', '.join(f'{k}={v}' for k, v in configs.items())}")
    for name, why in changes.refused.items():
        click.echo(f"topic {name}: {why}", err=True)
    if changes.unchecked:
        click.echo(f"configuration not reported by the broker (not compared): {', '.join(changes.unchecked)}")
    return bool(changes.refused)


@cli.command("init", context_settings=CONTEXT)
@setting_options("kafka", "topics", "clickhouse", only=("app_id",))
def init_command(**params) -> None:
    """What a deployment needs before its first start: `topics` (create, fix configs) then `migrate`."""
    from .clickhouse import connect
    from .migrate import ClusterLayout, migrate as apply
    from .topics import ensure_topics

    settings = load_settings(params)
    wrong = _report_topics(run_guarded(lambda: ensure_topics(settings)))
    layout = None
    if settings.clickhouse_cluster:
        layout = ClusterLayout(settings.clickhouse_cluster, replicated=settings.clickhouse_replicated, on_cluster=settings.clickhouse_replicated)
    applied = run_guarded(lambda: apply(connect(settings, with_database=False).execute, settings.clickhouse_database, layout=layout))
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    if wrong:
        sys.exit(1)


@cli.command(context_settings=CONTEXT)
@setting_options("kafka", "topics", "broker", "clickhouse", only=("app_id", "sink_group", "session_timeout"))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--no-broker", is_flag=True, help="do not connect to the Celery broker")
def check(fmt: str, no_broker: bool, **params) -> None:
    """Kafka topics against the plan, the ClickHouse schema, the Celery broker, consumer lag.
    Exit status 1 when anything loses data (a missing topic, an uncompacted changelog, fewer
    partitions or replicas than planned, a schema behind this version, a dependency down)."""
    from .check import render, run_checks

    settings = load_settings(params)
    report = run_checks(settings, broker=not no_broker)
    click.echo(json.dumps(report, indent=2, default=str) if fmt == "json" else render(report))
    sys.exit(1 if report["errors"] else 0)


# -- analytics and tools --------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@setting_options("clickhouse")
@click.option("--cluster", default="", help="only this cluster (default all)")
@click.option("--name", default="", help="only tasks of this name, e.g. proj.tasks.add (default all)")
@click.option("--window", type=float, default=0, help="only tasks first seen in the last N seconds (0 = all)")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text")
@click.option("--plot", metavar="DIR", help="also write PNG charts (throughput, runtime percentiles, failure rate, queues) to DIR")
@click.option("--search", "search_text", metavar="TEXT",
              help="instead of the questions, list the tasks this search finds (the UI's search box: 1234 args:x "
                   "kwargs:key=value exception:Timeout state:FAILED -name:demo.*; --name takes a part or a glob)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="tasks listed by --search")
def report(cluster: str, name: str, window: float, fmt: str, plot: str | None, search_text: str | None, limit: int, **params) -> None:
    """Answer the analytics questions (the queries shipped with this version) from ClickHouse."""
    from .clickhouse import connect
    from .report import render, run_report, search_tasks
    from .search import SearchError, parse

    settings = load_settings(params)
    client = connect(settings)

    def execute(sql: str, query_params: dict):
        rows, types = client.execute(sql, query_params, with_column_types=True)
        return [column for column, _ in types], rows

    since = time.time() - window if window else 0
    if search_text is not None:
        try:
            terms = parse(search_text)
        except SearchError as exc:
            raise click.BadParameter(str(exc), param_hint="--search") from None
        answer = run_guarded(lambda: search_tasks(execute, settings.clickhouse_database, terms, cluster, name, since, limit))
        click.echo(render([answer], fmt))
        return
    answers = run_guarded(lambda: run_report(execute, settings.clickhouse_database, {"cluster": cluster, "name": name, "since": since}))
    click.echo(render(answers, fmt))
    if plot:
        from pathlib import Path

        from .plots import write_plots

        for path in write_plots(answers, Path(plot)):
            click.echo(f"wrote {path}", err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True)
@click.option("--at", type=float, default=None,
              help="judge worker liveness at this epoch time on the monitor's clock (default: the newest receive time read, per cluster)")
@setting_options(only=("worker_expiry_factor",))
def replay(files: tuple[str, ...], at: float | None, **params) -> None:
    """The engine over recorded events (JSON lines; '-' = stdin, .gz ok): one record per line."""
    from .replay import replay as run_replay

    settings = load_settings(params)
    sys.exit(run_replay(list(files), at=at, expiry_factor=settings.worker_expiry_factor))


@cli.command(context_settings=CONTEXT)
@setting_options("clickhouse")
@click.option("--keep-months", type=click.IntRange(min=1), required=True, help="months kept, the current one included")
@click.option("--dry-run", is_flag=True, help="print the statements only")
def retention(keep_months: int, dry_run: bool, **params) -> None:
    """Drop month partitions of events / events_per_minute / queue_lengths older than --keep-months."""
    from .clickhouse import connect
    from .retention import drop_expired

    settings = load_settings(params)
    client = connect(settings)
    for statement in drop_expired(client.execute, settings.clickhouse_database, keep_months, dry_run=dry_run):
        click.echo(("would run: " if dry_run else "ran: ") + statement)


@cli.command(context_settings=CONTEXT)
@click.option("--markdown", is_flag=True, help="print the reference of every setting (docs/configuration.md) instead")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def config(markdown: bool, fmt: str) -> None:
    """The effective settings of this environment, secrets masked."""
    from .config import effective_table, settings_markdown

    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    settings = load_settings({})
    click.echo(json.dumps(settings.as_dict(), indent=2) if fmt == "json" else effective_table(settings))


COMPONENTS = {"bridge": "bridge_metrics_addr", "worker": "streams_metrics_addr", "sink": "sink_metrics_addr", "ui": "ui_port"}


def _pid1_words() -> list[str]:
    try:
        return Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _running_component() -> str | None:
    """The component the container's main process runs: ``celery-monitor <component>`` in the
    command line of PID 1 (or of the process an init such as tini started as its child)."""
    return next((w for w in _pid1_words() if w in COMPONENTS), None)


def _flag_of_main_process(name: str) -> str | None:
    """The value the main process got for a setting's flag (``--flag V`` or ``--flag=V``), if any:
    what it binds is what `health` must ask."""
    flag, words = field_flag(name), _pid1_words()
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


@cli.command(context_settings=CONTEXT)
@click.argument("component", required=False, type=click.Choice(sorted(COMPONENTS)))
@click.option("--timeout", type=click.FloatRange(min=0.1, max=60), default=4.0, help="seconds to wait for the answer")
def health(component: str | None, timeout: float) -> None:
    """Exit 0 when a component's /healthz answers 200 (the image's HEALTHCHECK; default: the
    component this container runs, from its main process's command line)."""
    import urllib.error
    import urllib.request

    component = component or _running_component()
    if component is None:
        click.echo("celery-monitor health: name the component (bridge, worker, sink, ui)", err=True)
        sys.exit(2)
    given = {n: _flag_of_main_process(n) for n in (COMPONENTS[component], "ui_host")} if _running_component() == component else {}
    settings = load_settings({k: v for k, v in given.items() if v is not None})
    if component == "ui":
        host, port = settings.ui_host, settings.ui_port
    else:
        host, _, port = getattr(settings, COMPONENTS[component]).rpartition(":")
    host = host.strip("[]")
    if port == "off":
        click.echo(f"{component}: {field_env(COMPONENTS[component])}=off, no endpoint to ask", err=True)
        sys.exit(1)
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # a wildcard bind answers on loopback
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            click.echo(f"{component}: {answer.status} {answer.read(200).decode(errors='replace').strip()}")
    except urllib.error.HTTPError as exc:
        click.echo(f"{component}: {exc.code} {exc.read(200).decode(errors='replace').strip()}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"{component}: {url}: {exc}", err=True)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="celery-monitor")


if __name__ == "__main__":
    main()
