"""The local dev stack (Tansu, ClickHouse, the machine's RabbitMQ/Redis) and what runs on it.

Not part of the installed package: `make up`, `make demo`, the tests and the benchmarks use it.
The product's defaults are for a production Apache Kafka; what only this stack needs is set here.
"""

from __future__ import annotations

import os
from typing import Mapping

# The dev stack's broker is Tansu with one node: its corrections on, one replica per topic.
DEV_ENV = {
    "KAFKA_FLAVOR": "tansu",
    "TOPIC_REPLICATION_FACTOR": "1",
    "TOPIC_MIN_INSYNC_REPLICAS": "1",
    "STREAMS_DATA_DIR": ".run/faust",
}


def dev_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default this process's) with the dev stack's settings where it says nothing."""
    environ = os.environ if environ is None else environ
    return {**DEV_ENV, **environ}


def dev_settings(environ: Mapping[str, str] | None = None, **overrides):
    """Settings for the dev stack: the environment's, with DEV_ENV where it says nothing."""
    from streams.config import Settings

    return Settings.load(environ=dev_environ(environ), **overrides)
