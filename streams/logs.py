"""One log format for every process: timestamp, level, component, message with key=value facts."""

import logging
import os


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
