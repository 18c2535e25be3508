"""Which bridge queues `python -m bridge queues` checks, and where."""

from click.testing import CliRunner

from bridge import lifecycle
from bridge.lifecycle import Candidate, Found, merge, queue_of
from streams.cli import cli


def test_configured_wins_over_history_and_keeps_its_last_sample():
    merged = merge([
        Candidate("a", queue_of("a"), None, "history", last_sampled=5.0),
        Candidate("a", queue_of("a"), "amqp://a//", "config", configured=True),
        Candidate("old", queue_of("old"), None, "history", last_sampled=1.0),
    ])  # fmt: skip
    assert [(c.queue, c.broker, c.configured, c.last_sampled) for c in merged] == [
        ("celery-monitor.bridge.a", "amqp://a//", True, 5.0),
        ("celery-monitor.bridge.old", None, False, 1.0),  # checked on every broker given
    ]


def test_status_says_what_to_look_at():
    c = Candidate("a", queue_of("a"), "amqp://", "cluster")
    assert Found(c, "amqp://", True, 10, 0).status.startswith("NO CONSUMER")
    assert Found(c, "amqp://", True, 10, 1).status == "consumed"
    assert Found(c, "amqp://", False).status == "absent"


def test_cli_shapes(monkeypatch):
    """`celery-monitor bridge forget|queues` hand their options to the lifecycle commands."""
    seen = {}
    monkeypatch.setattr(lifecycle, "cmd_forget", lambda args, settings: seen.update(forget=(args, settings)) or 0)
    monkeypatch.setattr(lifecycle, "cmd_queues", lambda args, settings: seen.update(queues=(args, settings)) or 0)
    runner = CliRunner()
    result = runner.invoke(cli, ["bridge", "--cluster", "prod", "forget", "--cluster", "old", "--dry-run", "--broker", "amqp://u:p@h//"], env={})
    assert result.exit_code == 0, result.output
    args, settings = seen["forget"]
    assert (args.forget_cluster, args.dry_run, args.queue_name, args.config) == ("old", True, "", None)
    assert (settings.cluster, settings.broker_url) == ("prod", "amqp://u:p@h//")
    result = runner.invoke(cli, ["bridge", "queues", "--cluster", "x", "--cluster", "y", "--no-history", "--format", "json"], env={})
    assert result.exit_code == 0, result.output
    args, _ = seen["queues"]
    assert (args.clusters, args.no_history, args.format) == (["x", "y"], True, "json")
