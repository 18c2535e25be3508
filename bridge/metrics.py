"""Prometheus metrics and a health check for the bridge (prometheus-client).

GET /metrics   the counters and gauges below
GET /healthz   200 while the consume loop is alive (it ticks at least every batch interval),
               503 with the reason otherwise — for a liveness probe.
Bound to BRIDGE_METRICS_ADDR (default 127.0.0.1:9464; 'off' = none).  A taken port is an error
naming the setting (streams/listen.py): a bridge silently without metrics is worse than none.
"""

from __future__ import annotations

import json
import logging
import time
from http.server import ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from streams.listen import serve_http

log = logging.getLogger("bridge.metrics")
STALE_AFTER = 120.0  # seconds without a loop tick (longer than a Kafka retry wait) -> unhealthy


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("bridge_events_in_total", "Events read from the broker", ["cluster", "type"], registry=r)
        self.records_out = Counter(
            "bridge_records_out_total", "Kafka records acknowledged (packs, ticks, dead letters, status)", ["cluster", "topic"], registry=r
        )
        self.events_out = Counter("bridge_events_out_total", "Events acknowledged by Kafka (inside packs)", ["cluster", "topic"], registry=r)
        self.dead_letters = Counter("bridge_dead_letters_total", "Inputs sent to the dead-letter topic", ["cluster"], registry=r)
        self.broker_acks = Counter("bridge_broker_acks_total", "Broker messages acked after Kafka acked them", ["cluster"], registry=r)
        self.kafka_errors = Counter("bridge_kafka_errors_total", "Batches Kafka did not acknowledge (retried)", ["cluster"], registry=r)
        self.broker_reconnects = Counter("bridge_broker_reconnects_total", "Broker connections lost and retried", ["cluster"], registry=r)
        self.gaps = Counter("bridge_gaps_total", "Loss detected (Redis): missed heartbeats, disconnects", ["cluster", "gap"], registry=r)
        self.in_flight = Gauge("bridge_in_flight_messages", "Broker messages received, not yet in Kafka", ["cluster"], registry=r)
        self.own_queue_messages = Gauge(
            "bridge_queue_messages", "Messages waiting in this bridge's own broker queue (AMQP; sampled with the task queues)", ["cluster"], registry=r
        )
        self.queue_sample_seconds = Gauge(
            "bridge_queue_sample_seconds", "Time the last queue-length sample took, by step (discover: inspect broadcasts; measure: passive declares)",
            ["cluster", "step"], registry=r,
        )  # fmt: skip
        self.last_tick: dict[str, float] = {}  # cluster -> when its consume loop last went round

    def tick(self, cluster: str) -> None:
        self.last_tick[cluster] = time.monotonic()

    def health(self) -> tuple[int, dict]:
        now = time.monotonic()
        ages = {cluster: round(now - t, 1) for cluster, t in self.last_tick.items()}
        stuck = sorted(c for c, age in ages.items() if age > STALE_AFTER)
        if stuck or not ages:
            return 503, {"status": "stuck" if stuck else "starting", "stuck": stuck, "seconds_since_loop": ages}
        return 200, {"status": "ok", "seconds_since_loop": ages}

    def serve(self, address: str) -> ThreadingHTTPServer | None:
        """Serve /metrics and /healthz; None when BRIDGE_METRICS_ADDR is off.

        Raises streams.listen.SettingError (naming BRIDGE_METRICS_ADDR) when the address is taken."""

        def health() -> tuple[int, bytes, str]:
            status, payload = self.health()
            return status, json.dumps(payload).encode(), "application/json"

        routes = {"/metrics": lambda: (200, generate_latest(self.registry), CONTENT_TYPE_LATEST), "/healthz": health}
        server = serve_http(address, "bridge_metrics_addr", routes, name="metrics")
        if server is not None:
            log.info("metrics on http://%s/metrics, health on /healthz", address)
        return server
