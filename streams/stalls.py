"""Unblock a source partition whose commits wait forever for a record Faust dropped.

faust-streaming/faust#596 (open): records fetched while tables recover are dropped when Faust
clears its queues after recovery, but the consumer's position is already past them. Faust
commits only contiguous acked offsets, so the partition never commits again and the dropped
events are never folded. We saw it on 3 of 4 restarts onto a backlog (docs/known-issues.md).

The watch: a partition whose lowest acked offset stays above its committed offset (a hole at
the head) across two checks is blocked for good; we forget its acks and seek it back to the
committed offset. Re-reading is safe: the engine ignores events it has already merged.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("streams.stalls")


class StallWatch:
    """The decision, kept apart from Faust's consumer so it can be tested alone."""

    def __init__(self) -> None:
        self.suspects: dict[Any, tuple[int, int]] = {}

    def blocked(self, tp, committed: int | None, acked: list[int]) -> bool:
        if committed is None or not acked or min(acked) <= committed:
            self.suspects.pop(tp, None)
            return False
        seen = (committed, min(acked))
        if self.suspects.get(tp) == seen:  # no progress since the last check: the hole stays
            del self.suspects[tp]
            return True
        self.suspects[tp] = seen
        return False


async def repair_blocked(app, watch: StallWatch, topics: set[str]) -> list:
    """Seek every blocked source partition back to its committed offset; returns them."""
    consumer = app.consumer
    repaired = []
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        acked = consumer._acked.get(tp) or []  # Faust internals: the same fields its commit reads
        committed = consumer._committed_offset.get(tp)
        if watch.blocked(tp, committed, acked):
            log.warning(
                "partition %s:%d commits are blocked at offset %d (next acked %d: records lost in recovery, "
                "faust#596); re-reading from %d, duplicates are ignored by the engine",
                tp.topic, tp.partition, committed, min(acked), committed,
            )
            consumer._acked[tp].clear()
            consumer._acked_index[tp].clear()
            await consumer.seek(tp, committed)
            repaired.append(tp)
    return repaired
