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

from . import compat

log = logging.getLogger("streams.tansu")
PROBE_SECONDS = 10.0
FETCH_MAX_WAIT_MS = 100


def fetch_highwaters(bootstrap: list[str], partitions, partial: bool = False) -> dict:
    """The high watermark of each partition, as a Fetch response reports it (blocking). Raises
    TimeoutError when one has no answer within PROBE_SECONDS, unless ``partial``: then the
    partitions that answered (one slow partition must not hide the others' answers).

    librdkafka's consumer, not kafka-python's: kafka-python 3.0's I/O loop, closed right after
    a poll, cancels its own metadata refresh and reads from the socket it just closed, which
    it logs as two ERRORs with a traceback ("Metadata refresh: failed Cancelled",
    "'NoneType' object has no attribute 'recv'") on every clean worker start. librdkafka
    keeps the high watermark of each Fetch response (``get_watermark_offsets(cached=True)``);
    its uncached form asks ListOffsets, which is what Tansu answers wrongly.
    """
    from confluent_kafka import Consumer, TopicPartition

    partitions = list(partitions)
    if not partitions:
        return {}
    probe = Consumer({
        "bootstrap.servers": ",".join(bootstrap),
        "group.id": "celery-monitor-highwater-probe",  # required by the client; assign() joins no group
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
        "fetch.message.max.bytes": 1,  # we want the watermark, not the data
        "auto.offset.reset": "earliest",  # offset 0 gone (retention): fetch from the first one instead
        "logger": log,
    })  # fmt: skip
    try:
        tps = {(tp.topic, tp.partition): tp for tp in partitions}
        # Offset 0, not OFFSET_BEGINNING: resolving that costs a ListOffsets round and ~0.5 s.
        probe.assign([TopicPartition(topic, partition, 0) for topic, partition in tps])
        marks: dict = {}
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            probe.consume(num_messages=len(tps), timeout=0.05)
            for (topic, partition), original in tps.items():
                _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
                if high >= 0:  # negative: no Fetch response for it yet
                    marks[original] = high
            if len(marks) == len(tps):
                return marks
        if partial:
            return marks
        raise TimeoutError(f"no Fetch high watermark for {partitions} within {PROBE_SECONDS}s")
    finally:
        probe.close()


def install(bootstrap: str) -> None:
    """Make Faust's end-offset lookups use Fetch high watermarks, and its fetches short (Tansu only)."""
    compat.cap_fetch_wait(FETCH_MAX_WAIT_MS)
    servers = bootstrap.split(",")

    async def correct(reported: dict) -> dict:
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

    compat.wrap_highwaters(correct)
