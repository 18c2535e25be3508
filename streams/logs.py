"""One log format for every process: timestamp, level, component, message with key=value facts."""

import logging
import os


# aiokafka logs every failed reconnect and fetch at ERROR while a broker is away: rate-limited
AIOKAFKA_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.client", "aiokafka.cluster", "aiokafka.consumer.fetcher",
                    "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender", "faust.transport.drivers.aiokafka")  # fmt: skip


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "kombu", "amqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit())


class RateLimit(logging.Filter):
    """Lets the same message through once per ``seconds`` (digits ignored: timestamps, ports,
    counts); says how many were held back the next time it lets one through. librdkafka logs every
    failed reconnect, several a second while a broker is away."""

    def __init__(self, seconds: float = 60.0):
        super().__init__()
        self.seconds = seconds
        self.last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        import re
        import time

        key = re.sub(r"\d+", "#", record.getMessage())[:200]
        now = time.monotonic()
        seen, held = self.last.get(key, (None, 0))
        if seen is not None and now - seen < self.seconds:
            self.last[key] = (seen, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.seconds:.0f}s)"
        self.last[key] = (now, 0)
        if len(self.last) > 1000:
            self.last.clear()
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger every librdkafka client of the pipeline logs through (rate-limited)."""
    logger = logging.getLogger("librdkafka")
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit())
    return logger
