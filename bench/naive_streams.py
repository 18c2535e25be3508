"""The baseline of `make bench-streams`: the naive Faust agent, one event at a time.

Same engine, same topics and table as streams.app, but per event: table get, fold, table set,
one state record sent (what a first Faust agent looks like). Counts events like the real app
(streams_events_in_total on STREAMS_METRICS_ADDR) so the benchmark reads both the same way.
"""

from __future__ import annotations

import sys

import faust
from prometheus_client import CollectorRegistry, Counter, start_http_server

from streams import records
from streams.config import Settings
from streams.engine import TaskEvent, derive_task, fold_task


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 6),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    events = app.topic(settings.topic_task_events, key_serializer="raw", value_serializer="raw")
    states = app.topic(settings.topic_task_states, key_serializer="raw", value_serializer="raw")
    tasks = app.Table("tasks", default=None, partitions=settings.topic_partitions, key_type=str)
    registry = CollectorRegistry()
    events_in = Counter("streams_events_in_total", "events read", ["topic"], registry=registry)
    records_out = Counter("streams_records_out_total", "records published", ["topic"], registry=registry)

    @app.agent(events, name="naive_fold")
    async def naive_fold(stream):
        async for event in stream.events():
            events_in.labels(settings.topic_task_events).inc()
            for item in records.decode(event.value):
                if item.__class__ is TaskEvent:
                    state, _ = fold_task(tasks.get(item.key), item)
                    tasks[item.key] = state
                    await states.send(key=item.uuid.encode(), value=records.encode(derive_task(state)))
                    records_out.labels(settings.topic_task_states).inc()

    @app.task
    async def serve_metrics():
        host, _, port = settings.streams_metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host, registry=registry)

    return app


if __name__ == "__main__":
    app = create_app(Settings.load())
    sys.argv = ["naive", "worker", "-l", "warn", "--without-web"]
    app.main()
