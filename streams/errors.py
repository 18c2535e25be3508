"""Errors that mean "a dependency refused or cannot be reached": the command line prints them as
one line and exits 1 (streams.cli.run_guarded), instead of a traceback."""


class DependencyError(RuntimeError):
    """Kafka, ClickHouse or the Celery broker refused what a command needs; the message says what
    and, where it can, what to change."""
