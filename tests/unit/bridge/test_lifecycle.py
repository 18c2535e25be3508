"""Which bridge queues `python -m bridge queues` checks, and where."""

from bridge.lifecycle import Candidate, Found, merge, parse_args, queue_of


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


def test_cli_shapes():
    args, _ = parse_args(["forget", "--cluster", "old", "--dry-run"])
    assert (args.command, args.forget_cluster, args.dry_run, args.queue_name) == ("forget", "old", True, "")
    args, _ = parse_args(["queues", "--cluster", "x", "--cluster", "y", "--no-history", "--format", "json"])
    assert (args.clusters, args.no_history, args.format) == (["x", "y"], True, "json")
