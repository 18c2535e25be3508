"""The two yardsticks of `make bench-streams`, as Faust apps on the same topics as streams.app:

    python -m bench.faust_baselines naive     the naive agent, one event at a time: table get,
                                              fold, table set, one state record sent (the baseline)
    python -m bench.faust_baselines ceiling   an agent that only counts take_events batches: how
                                              fast faust-streaming alone delivers records here

Both count events like the real app (streams_events_in_total on STREAMS_METRICS_ADDR), so the
benchmark reads all three the same way.
"""

from __future__ import annotations

import sys

import faust
from prometheus_client import CollectorRegistry, Counter, start_http_server

from streams import records
from streams.config import Settings
from streams.engine import TaskEvent, derive_task, fold_task


def create_app(settings: Settings, mode: str) -> faust.App:
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
    registry = CollectorRegistry()
    events_in = Counter("streams_events_in_total", "events read", ["topic"], registry=registry).labels(settings.topic_task_events)
    records_out = Counter("streams_records_out_total", "records published", ["topic"], registry=registry).labels(settings.topic_task_states)

    if mode == "naive":
        states = app.topic(settings.topic_task_states, key_serializer="raw", value_serializer="raw")
        tasks = app.Table("tasks", default=None, partitions=settings.topic_partitions, key_type=str)

        @app.agent(events, name="naive_fold")
        async def naive_fold(stream):
            async for event in stream.events():
                events_in.inc()
                for item in records.decode(event.value):
                    if item.__class__ is TaskEvent:
                        state, _ = fold_task(tasks.get(item.key), item)
                        tasks[item.key] = state
                        await states.send(key=item.uuid.encode(), value=records.encode(derive_task(state)))
                        records_out.inc()

    elif mode == "ceiling":

        @app.agent(events, name="count_only")
        async def count_only(stream):
            async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_seconds):
                events_in.inc(len(batch))

    else:
        raise SystemExit(f"unknown mode {mode!r}: naive | ceiling")

    @app.task
    async def serve_metrics():
        host, _, port = settings.streams_metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host, registry=registry)

    return app


if __name__ == "__main__":
    app = create_app(Settings.load(), sys.argv[1])
    sys.argv = [sys.argv[1], "worker", "-l", "warn", "--without-web"]
    app.main()
