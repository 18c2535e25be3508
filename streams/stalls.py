"""Never fold past a record Faust lost: detect offset gaps in the agents, re-read, hold commits.

faust-streaming/faust#596 (open): records fetched while tables recover are dropped when Faust
clears its queues after recovery, yet the consumer's position is already past them. Two
outcomes, both seen here on restarts onto a backlog (docs/known-issues.md):
- with a committed offset, Faust commits only contiguous acked offsets: the partition never
  commits again and the dropped events are never folded (a stall);
- with none (a new group, or offset 0, which Faust stores as "none"), Faust skips its own gap
  check and commits past the hole: the dropped events are silently lost.

``OffsetGaps`` (pure) follows each source partition's offsets in the agent: the first record of
a generation must be the committed offset (else the partition's first offset), every next one
the previous + 1. On a gap the agent reads the missing records itself (``fetch_range``, a
plain consumer outside the group) and folds them before the record that revealed the gap;
``install_commit_floor`` keeps Faust from committing past the hole until then. Seeking Faust's
consumer back does not work: records fetched before the seek raise Faust's read offset and it
drops the re-read ones. Re-reading is safe either way: the engine ignores events it has
already merged. Topics with legitimate offset gaps (compacted, transactional) are not sources.

A gap is revealed by the record after it; when Faust dropped *every* record up to the end of a
partition (a restart onto a backlog that is not growing: Faust fetched the whole backlog while
its tables recovered, then its seek to the committed offsets made it drop what it fetched again)
no later record ever comes. ``OffsetGaps.stalled`` finds those: a partition whose high watermark
is past the next offset the agent expects while nothing of it arrived for a while; the app reads
them back the same way, from a timer, holding the partition's lock as the agent does.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

from . import compat
from .connections import librdkafka_options

log = logging.getLogger("streams.stalls")

class OffsetGaps:
    def __init__(self) -> None:
        self.expected: dict[Any, tuple[int, int]] = {}  # tp -> (generation, next offset)
        self.floors: dict[Any, int] = {}  # tp -> no commit may pass this offset until it is acked

    def knows(self, tp, generation: int) -> bool:
        entry = self.expected.get(tp)
        return entry is not None and entry[0] == generation

    def start(self, tp, generation: int, first_offset: int) -> None:
        """A partition (re)assigned in ``generation`` must resume at ``first_offset``."""
        self.expected[tp] = (generation, first_offset)

    def missing_before(self, tp, generation: int, offset: int) -> range:
        """The offsets never delivered before this record (usually none); holds commits there."""
        _, expected = self.expected[tp]
        if offset >= expected:
            self.expected[tp] = (generation, offset + 1)
        if offset > expected:
            self.floors[tp] = expected
            return range(expected, offset)
        return range(0)

    def filled(self, tp) -> None:
        self.floors.pop(tp, None)

    def next_offset(self, tp) -> int | None:
        entry = self.expected.get(tp)
        return None if entry is None else entry[1]

    def stalled(self, tp, highwater: int | None, committed: int | None, quiet_for: float, patience: float) -> range:
        """Offsets of ``tp`` that Faust fetched but never delivered, with no later record to reveal
        them: the high watermark is past the next expected offset (or the committed one, when the
        agent has seen nothing of ``tp`` yet) and nothing of ``tp`` arrived for ``patience`` s."""
        expected = self.next_offset(tp)
        if expected is None:
            expected = committed
        if expected is None or highwater is None or highwater <= expected or quiet_for < patience:
            return range(0)
        return range(expected, highwater)

    def advance(self, tp, generation: int, offset: int) -> None:
        """Records up to ``offset`` were read back and folded: expect the next one."""
        entry = self.expected.get(tp)
        if entry is None or entry[1] <= offset:
            self.expected[tp] = (generation if entry is None else entry[0], offset + 1)


def committed_offset(consumer, tp) -> int | None:
    """Faust's record of the group's committed offset of a partition (None: nothing committed)."""
    return compat.committed_offset(consumer, tp)


def ack_read_back(consumer, tp, offset: int) -> None:
    """Count a read-back record's offset as acked, as Faust counts its own records' acks: the
    commit floor of ``install_commit_floor`` lifts once the hole is acked."""
    compat.mark_acked(consumer, tp, offset)


def install_commit_floor(consumer, floors: dict) -> None:
    """Make this Faust consumer refuse to commit a partition past its floor until it is acked."""
    compat.hold_commits(consumer, floors)


as_current_event = compat.as_current_event


async def first_offset(consumer, tp) -> int:
    """Where a partition resumes: its committed offset, else its first available offset."""
    committed = committed_offset(consumer, tp)
    if committed is not None:
        return committed
    earliest = await consumer.earliest_offsets(tp)
    return earliest.get(tp) or 0


def fetch_range(settings, topic: str, partition: int, offsets: range) -> list[SimpleNamespace]:
    """The records the log holds at ``offsets`` of one partition (``fetch_ranges`` of one)."""
    return fetch_ranges(settings, {(topic, partition): offsets})[(topic, partition)]


def fetch_ranges(settings, ranges: dict[tuple[str, int], range]) -> dict[tuple[str, int], list[SimpleNamespace]]:
    """The records the log holds at the offsets of each ``(topic, partition)``, read by one
    consumer outside the consumer group (blocking): per partition, each record as ``.offset`` and
    ``.value`` (bytes), in offset order. One consumer for every partition: a stalled broker stalls
    many partitions at once, and a consumer per partition cost a connection and a metadata
    round-trip each (a check of 16 stalled partitions took 10 s).

    A Kafka log may skip offsets (compaction, transaction markers, a broker that lost an unacked
    tail when it crashed): the broker answers a fetch at a missing offset with the next record,
    so an offset below the first one returned is not in the log, and none is lost by skipping it.
    A partition's read ends at the first record at or past its ``stop``, or once the consumer's
    position (which moves past offsets the log does not hold) reaches it with nothing left to hand
    over. Raises RuntimeError when one cannot get that far within 10 s of silence.
    librdkafka's consumer: kafka-python's skipped records of large batches on Tansu."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    found: dict[tuple[str, int], list[SimpleNamespace]] = {key: [] for key in ranges}
    expected = {key: r.start for key, r in ranges.items() if r.stop > r.start}
    if not expected:
        return found
    consumer = Consumer({**librdkafka_options(settings), "group.id": "celery-monitor-read-back", "enable.auto.commit": False,
                         "auto.offset.reset": "error"})  # never jump over a range: an "out of range" is reported, below
    try:
        consumer.assign([TopicPartition(topic, partition, start) for (topic, partition), start in expected.items()])
        deadline = time.monotonic() + 10.0
        while expected:
            if time.monotonic() > deadline:
                left = ", ".join(f"{t}:{p} offsets {o}..{ranges[t, p].stop - 1}" for (t, p), o in expected.items())
                raise RuntimeError(f"{left} could not be read")
            batch = consumer.consume(max(1, min(sum(ranges[k].stop - o for k, o in expected.items()), 10_000)), 0.5)
            for message in batch:
                key = (message.topic(), message.partition())
                if key not in expected:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._AUTO_OFFSET_RESET:
                        low, _ = consumer.get_watermark_offsets(TopicPartition(*key), timeout=5)
                        if expected[key] < low:  # deleted by retention meanwhile: nothing left to read there
                            log.error("%s:%d offsets %d..%d were deleted before they could be read back", *key, expected[key], low - 1)
                            expected[key] = low
                        time.sleep(0.2)  # a broker coming back from a restart: ask again
                        consumer.seek(TopicPartition(*key, expected[key]))
                    continue
                if message.offset() < expected[key]:
                    continue
                stop = ranges[key].stop
                if message.offset() >= stop:
                    del expected[key]
                    consumer.pause([TopicPartition(*key)])  # done: no more of it
                    continue
                found[key].append(SimpleNamespace(offset=message.offset(), value=message.value()))
                expected[key] = message.offset() + 1
                deadline = time.monotonic() + 10.0
                if expected[key] >= stop:
                    del expected[key]
                    consumer.pause([TopicPartition(*key)])  # done: no more of it
            if not batch and expected:
                positions = consumer.position([TopicPartition(*key) for key in expected])
                for tp in positions:  # fetched past the range, nothing left to hand over: the rest is not in the log
                    if tp.offset >= ranges[tp.topic, tp.partition].stop:
                        del expected[tp.topic, tp.partition]
        return found
    finally:
        consumer.close()
