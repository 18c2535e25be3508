"""Corrections for known bugs of the Tansu broker (0.6.x) — on only when KAFKA_FLAVOR=tansu.

1. Tansu answers ListOffsets(LATEST) with (first offset of the last record batch + 1) instead of
the partition's end.  Faust asks for exactly that to know where changelog recovery ends, so it
stops early (stale table rows) — and we saw a source partition stall after such a recovery.
The high watermark in a Fetch response is right, so the correction asks Fetch instead: a
short-lived consumer fetches each partition once and reports the high watermark it got.

2. Tansu does not answer a Fetch when records arrive while it waits: it answers when the request's
max-wait runs out. Faust's consumer waits up to 1,500 ms per fetch (hard-coded in its aiokafka
driver), so every record reached the agents ≈ 0.45 s late on average at low rates (measured: a
record produced while a fetch waits is delivered 0.45 s later with max-wait 1,500 ms, 0.08 s with
500 ms, 0.005 s with 100 ms). With Tansu the worker's fetches wait at most
``FETCH_MAX_WAIT_MS``; Apache Kafka answers as soon as data arrives (fetch.min.bytes), so its
long poll is left alone.

With Apache Kafka (KAFKA_FLAVOR=kafka) nothing here is installed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = logging.getLogger("streams.tansu")
PROBE_SECONDS = 10.0
FETCH_MAX_WAIT_MS = 100


def fetch_highwaters(bootstrap: list[str], partitions) -> dict:
    """The high watermark of each partition, as a Fetch response reports it (blocking)."""
    from kafka import KafkaConsumer, TopicPartition

    partitions = list(partitions)
    if not partitions:
        return {}
    probe = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=1,  # we want the watermark, not the data
    )
    try:
        tps = {TopicPartition(tp.topic, tp.partition): tp for tp in partitions}
        probe.assign(list(tps))
        probe.seek_to_beginning(*tps)
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            probe.poll(timeout_ms=100)
            marks = {original: probe.highwater(tp) for tp, original in tps.items()}
            if all(mark is not None for mark in marks.values()):
                return marks
        raise TimeoutError(f"no Fetch high watermark for {partitions} within {PROBE_SECONDS}s")
    finally:
        probe.close()


def install(bootstrap: str) -> None:
    """Make Faust's highwaters() use Fetch high watermarks, and its fetches short (Tansu only)."""
    _short_fetches()
    servers = bootstrap.split(",")
    original = AIOKafkaConsumerThread._highwaters

    async def _highwaters(self, partitions):
        reported = await original(self, partitions)
        try:
            loop = asyncio.get_running_loop()
            actual = await loop.run_in_executor(None, fetch_highwaters, servers, list(reported))
        except Exception as exc:  # noqa: BLE001 - never break recovery over the probe
            log.warning("tansu: high-watermark probe failed (%r); using ListOffsets answers", exc, exc_info=True)
            return reported
        fixed = {tp: actual.get(tp, offset) for tp, offset in reported.items()}
        wrong = {f"{tp.topic}[{tp.partition}]": (reported[tp], fixed[tp]) for tp in reported if reported[tp] != fixed[tp]}
        if wrong:
            log.info("tansu: corrected end offsets (ListOffsets -> Fetch high watermark): %s", wrong)
        return fixed

    AIOKafkaConsumerThread._highwaters = _highwaters


def _short_fetches() -> None:
    if getattr(AIOKafkaConsumerThread, "_celery_monitor_short_fetches", False):
        return
    original = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka when its fetcher starts
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    AIOKafkaConsumerThread._celery_monitor_short_fetches = True
