"""The Faust application: raw events in, task/worker state tables, state records out.

Data path (docs/architecture.md):
    celery.task-events.v1   --fold_task_events-->   tasks table   --> celery.task-states.v1
    celery.worker-events.v1 --fold_worker_events--> workers table --> celery.worker-states.v1
    expire_workers (timer): heartbeats stopped -> OFFLINE(heartbeat-expired) records
    anything invalid --> celery.dead-letters.v1 (reason + source offset)
The rules are all in streams.engine; the agents only move bytes in and out of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import faust
import mode

from . import records
from .config import Settings
from .engine import TaskEvent, WorkerEvent, derive_task, derive_worker, fold_task, fold_worker

log = logging.getLogger("streams.app")


class Liveness:
    """What was last announced per worker, so a state is published once per change."""

    def __init__(self) -> None:
        self.announced: dict[str, tuple] = {}

    def changed(self, key: str, record: dict) -> bool:
        current = (record["state"], record["offline_reason"])
        if self.announced.get(key) == current:
            return False
        self.announced[key] = current
        return True


def _source(event) -> dict:
    msg = event.message
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}


def create_app(settings: Settings) -> faust.App:
    partitions = settings.topic_partitions
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if settings.tansu_fixes:
        from . import tansu

        tansu.install(settings.kafka_bootstrap)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 6),
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_port=settings.web_port or 6066,  # only used when the web server is enabled
        producer_acks=-1,
        broker_credentials=_credentials(settings),
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)

    task_events = topic(settings.topic_task_events)
    worker_events = topic(settings.topic_worker_events)
    task_states = topic(settings.topic_task_states)
    worker_states = topic(settings.topic_worker_states)
    dead_letters = topic(settings.topic_dead_letters)

    # Values are engine state dicts; Faust's JSON writes the `ids` set as a list, and the fold
    # turns it back into a set on the next event (see fold_task).
    tasks = app.Table("tasks", default=None, partitions=partitions, key_type=str)
    workers = app.Table("workers", default=None, partitions=partitions, key_type=str)
    liveness = Liveness()
    expiry = settings.worker_expiry_factor

    async def dead_letter(item, event, expected: str) -> None:
        await dead_letters.send(value=records.dead_letter(_as_invalid(item, expected), _source(event), "streams"))

    @app.agent(task_events, name="fold_task_events")
    async def fold_task_events(stream):
        async for event in stream.events():
            for item in records.decode(event.value):
                if item.__class__ is not TaskEvent:
                    await dead_letter(item, event, "task")
                    continue
                state, changed = fold_task(tasks.get(item.key), item)
                if changed:
                    tasks[item.key] = state
                    await task_states.send(key=item.uuid.encode(), value=records.encode(derive_task(state)))

    @app.agent(worker_events, name="fold_worker_events")
    async def fold_worker_events(stream):
        async for event in stream.events():
            for item in records.decode(event.value):
                if item.__class__ is not WorkerEvent:
                    await dead_letter(item, event, "worker")
                    continue
                state, changed = fold_worker(workers.get(item.key), item)
                if changed:
                    workers[item.key] = state
                    record = derive_worker(state, None, expiry)
                    liveness.changed(item.key, record)  # the timer then only publishes real changes
                    await worker_states.send(key=item.key.encode(), value=records.encode(record))

    @app.timer(interval=1.0, name="expire_workers")
    async def expire_workers():
        now = time.time()
        for key, state in list(workers.items()):
            record = derive_worker(state, now, expiry)
            if liveness.changed(key, record):
                record["evaluated_at"] = now
                await worker_states.send(key=key.encode(), value=records.encode(record))

    if settings.sink == "inline":
        app.service(_sink_service(settings))
    return app


def _credentials(settings: Settings):
    """Faust/aiokafka credentials from the same settings the kafka-python clients use."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context)


def _as_invalid(item, expected: str) -> records.Invalid:
    if isinstance(item, records.Invalid):
        return item
    return records.Invalid(f"{type(item).__name__} on the {expected}-events topic", item.body)


def _sink_service(settings: Settings):
    from .sink.consumer import ClickHouseSink  # clickhouse-driver only where the sink runs

    class ClickHouseSinkService(mode.Service):
        """Runs the commit-after-write sink in a thread beside the agents; its crash is the worker's."""

        async def on_start(self) -> None:
            self.sink = ClickHouseSink(settings)
            loop = asyncio.get_running_loop()

            def run() -> None:
                try:
                    self.sink.run()
                except BaseException as exc:  # noqa: BLE001 - reported to the worker, which stops
                    log.exception("ClickHouse sink crashed; stopping the worker so a supervisor restarts it")
                    asyncio.run_coroutine_threadsafe(self.crash(exc), loop)

            self.thread = threading.Thread(target=run, name="clickhouse-sink", daemon=True)
            self.thread.start()

        async def on_stop(self) -> None:
            self.sink.stop()
            await asyncio.get_running_loop().run_in_executor(None, self.thread.join, 15)

    return ClickHouseSinkService
