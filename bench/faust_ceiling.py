"""The ceiling of `make bench-streams`: a Faust agent that only counts the events it is given.

Same topic, same take_events batching, no work at all: how fast faust-streaming alone delivers
records to an agent on this machine. The streams worker cannot be faster than this.
"""

from __future__ import annotations

import sys

import faust
from prometheus_client import CollectorRegistry, Counter, start_http_server

from streams.config import Settings


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 6),
        consumer_auto_offset_reset="earliest",
    )
    events = app.topic(settings.topic_task_events, key_serializer="raw", value_serializer="raw")
    registry = CollectorRegistry()
    events_in = Counter("streams_events_in_total", "events read", ["topic"], registry=registry)

    @app.agent(events, name="count_only")
    async def count_only(stream):
        async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_seconds):
            events_in.labels(settings.topic_task_events).inc(len(batch))

    @app.task
    async def serve_metrics():
        host, _, port = settings.streams_metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host, registry=registry)

    return app


if __name__ == "__main__":
    app = create_app(Settings.load())
    sys.argv = ["ceiling", "worker", "-l", "warn", "--without-web"]
    app.main()
