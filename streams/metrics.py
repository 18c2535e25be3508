"""Prometheus metrics of a streams worker (prometheus-client), on STREAMS_METRICS_ADDR.

Counters give events/s as a rate; table sizes and lag are read when scraped. Bound to
127.0.0.1 by default; a taken port is an error naming STREAMS_METRICS_ADDR (streams/listen.py).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from .listen import serve_http

log = logging.getLogger("streams.metrics")
STALE_AFTER = 120.0  # seconds without a timer tick of the event loop -> unhealthy


class StreamsMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events_in = Counter("streams_events_in_total", "Events read from the event topics", ["topic"], registry=r)
        self.events_merged = Counter(
            "streams_events_merged_total", "Events that changed a state (not duplicates)", ["table"], registry=r
        )
        self.records_out = Counter("streams_records_out_total", "Records published", ["topic"], registry=r)
        self.dead_letters = Counter("streams_dead_letters_total", "Inputs sent to the dead-letter topic", ["topic"], registry=r)
        self.alerts = Counter("streams_alerts_total", "Alerts published", ["alert"], registry=r)
        self.poison = Counter(
            "streams_poison_events_total", "Valid events dead-lettered because folding them failed or made a record too large "
            "(the partition moves on)", ["topic", "reason"], registry=r,
        )  # fmt: skip
        self.retired = Counter("streams_tasks_retired_total", "Finished tasks dropped from the table after retention", registry=r)
        self.offset_gaps_repaired = Counter(
            "streams_offset_gaps_repaired_total", "Offset gaps (records Faust never delivered) re-read", registry=r
        )
        self.table_size = Gauge("streams_table_keys", "Keys held in a table on this worker", ["table"], registry=r)
        self.other_events = Counter(
            "streams_other_events_total", "Well-formed events no rule reads (kept in ClickHouse, no state)", ["type"], registry=r
        )
        self.watermark = Gauge(
            "streams_watermark_seconds", "read_until of the worker-events packs read, per cluster and partition (monitor clock)",
            ["cluster", "partition"], registry=r,
        )
        self.last_tick: float | None = None  # monotonic time a worker timer last ran (the event loop is alive)
        self.lag = Gauge("streams_consumer_lag", "High watermark minus committed offset, per source partition", ["topic", "partition"], registry=r)

    def watch_tables(self, sizes: dict[str, Callable[[], int]]) -> None:
        for table, size in sizes.items():
            self.table_size.labels(table).set_function(size)

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def health(self) -> tuple[int, dict]:
        """503 while starting (before the first timer ran: table recovery) and when the event loop
        has not run a timer for STALE_AFTER seconds; 200 otherwise."""
        if self.last_tick is None:
            return 503, {"status": "starting"}
        age = time.monotonic() - self.last_tick
        return (200 if age <= STALE_AFTER else 503), {"status": "ok" if age <= STALE_AFTER else "stuck", "seconds_since_tick": round(age, 1)}

    def serve(self, address: str) -> None:
        """Serve /metrics and /healthz from a thread; nothing when STREAMS_METRICS_ADDR is off.

        Raises listen.SettingError (naming STREAMS_METRICS_ADDR) when the address is taken."""

        def health():
            status, payload = self.health()
            return status, json.dumps(payload).encode(), "application/json"

        routes = {"/metrics": lambda: (200, generate_latest(self.registry), CONTENT_TYPE_LATEST), "/healthz": health}
        if serve_http(address, "streams_metrics_addr", routes, name="metrics") is not None:
            log.info("metrics on http://%s/metrics, health on /healthz", address)
