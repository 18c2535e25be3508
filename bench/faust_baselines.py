"""The yardsticks of `make bench-streams`, as Faust apps reading one event per Kafka record (the
bridge's records before packs, TOPIC_TASK_EVENTS pointed at a topic of v1 envelopes):

    python -m bench.faust_baselines naive     the naive agent, one event at a time: table get,
                                              fold, table set, one state record sent
    python -m bench.faust_baselines ceiling   an agent that only counts take_events batches: how
                                              fast faust-streaming alone delivers records here
    python -m bench.faust_baselines batched   the streams worker before packs (issue 13's "today"):
                                              take_events batches of 2,000, one table write and one
                                              state record per changed task per batch, both through
                                              Faust's producer

All count events like the real app (streams_events_in_total on STREAMS_METRICS_ADDR), so the
benchmark reads every worker the same way.
"""

from __future__ import annotations

import sys
import weakref

import faust
from faust.streams import _current_event
from prometheus_client import CollectorRegistry, Counter, start_http_server

from devstack import dev_settings
from streams import records
from streams.config import Settings
from streams.engine import TaskEvent, derive_task, fold_task


BATCH, BATCH_SECONDS = 2000, 0.2  # the batched worker's STREAMS_BATCH_SIZE / _SECONDS before packs


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
        producer_linger=0.01,  # as the batched worker had it
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
            async for batch in stream.take_events(BATCH, within=BATCH_SECONDS):
                events_in.inc(len(batch))

    elif mode == "batched":
        states = app.topic(settings.topic_task_states, key_serializer="raw", value_serializer="raw")
        tasks = app.Table("tasks", default=None, partitions=settings.topic_partitions, key_type=str)

        @app.agent(events, name="batched_fold")
        async def batched_fold(stream):
            async for batch in stream.take_events(BATCH, within=BATCH_SECONDS):
                events_in.inc(len(batch))
                changed, origin = {}, {}
                for event in batch:
                    for item in records.decode(event.value):
                        if item.__class__ is TaskEvent:
                            key = item.key
                            state, is_new = fold_task(changed.get(key) or tasks.get(key), item)
                            if is_new:
                                changed[key], origin[key] = state, event
                for key, state in changed.items():
                    # the old app's stand-in: a batch has no current event, Faust takes the
                    # table partition from the event that carried the key
                    token = _current_event.set(weakref.ref(origin[key]))
                    try:
                        tasks[key] = state
                    finally:
                        _current_event.reset(token)
                    await states.send(key=state["uuid"].encode(), value=records.encode(derive_task(state)))
                records_out.inc(len(changed))

    else:
        raise SystemExit(f"unknown mode {mode!r}: naive | ceiling | batched")

    @app.task
    async def serve_metrics():
        host, _, port = settings.streams_metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host, registry=registry)

    return app


if __name__ == "__main__":
    app = create_app(dev_settings(), sys.argv[1])
    sys.argv = [sys.argv[1], "worker", "-l", "warn", "--without-web"]
    app.main()
