"""How far one cluster's consumer has read, and when its worker partitions need a tick (pure).

``read_until`` (on every pack): the monitor-clock time up to which the bridge has read everything
the broker had for it. The streams app judges worker expiry against it, so it must never run ahead
of what was read:

* AMQP: the latest time the bridge saw its queue with no ready messages — an idle wait that got
  nothing while no message was unacked (after the broker had a full wait to deliver more since the
  last ack), or a passive queue_declare answering message_count 0 (at most once a second, as a
  busy consumer never waits idle). While the bridge drains a backlog it stays at the time it last
  caught up.
* Redis pub/sub: nothing queues at the broker, but what was published while the bridge did not
  read (a pause, a long flush) waits in its socket: the time a read began that found nothing left
  to read. Ticks never move it (a tick sent before the socket's backlog was read made a paused
  bridge's workers look silent: a false worker-lost).
* Disconnected: it never moves.

Ticks: every ``tick_seconds`` each worker-events partition that got no pack in that interval gets an
empty pack with the current ``read_until`` (only while connected and consuming), so the streams app
sees time pass on partitions with no worker traffic.
"""

from __future__ import annotations

import math
from typing import Iterable

SAMPLE_SECONDS = 1.0  # passive queue_declare at most this often


class Progress:
    def __init__(self, tick_seconds: float, idle_wait: float):
        self.tick_seconds = tick_seconds
        self.idle_wait = idle_wait
        self.read_until = 0.0  # 0 = not caught up yet since the bridge started
        self.connected = False
        self.last_ack_at = -math.inf
        self.last_sample_at = -math.inf
        self.next_tick: float | None = None
        self.last_pack: dict[int, float] = {}  # worker-events partition -> when it last got a pack

    # -- connection ------------------------------------------------------------------------------
    def connect(self, now: float) -> None:
        self.connected = True
        self.last_ack_at = now  # as after an ack: the broker gets one idle wait to start delivering
        self.next_tick = now + self.tick_seconds

    def disconnect(self) -> None:
        self.connected = False

    # -- observations ----------------------------------------------------------------------------
    def caught_up(self, at: float) -> None:
        """Everything the broker had before ``at`` has been read (and will be in the next packs)."""
        if self.connected and at > self.read_until:
            self.read_until = at

    def acked(self, now: float) -> None:
        self.last_ack_at = now

    def idle_wait_ended(self, started: float, unacked: int) -> None:
        """An idle wait that began at ``started`` got no message: with nothing unacked (the
        prefetch window open) and the broker given a whole wait since the last ack to deliver what
        it had, the queue was empty then."""
        if unacked == 0 and started - self.last_ack_at >= self.idle_wait:
            self.caught_up(started)

    def sample_due(self, now: float) -> bool:
        """Whether to ask the broker for the queue's ready count (AMQP, busy consumer)."""
        return self.connected and now - self.last_sample_at >= SAMPLE_SECONDS and now - self.read_until >= SAMPLE_SECONDS

    def sampled(self, asked_at: float, ready: int) -> None:
        self.last_sample_at = asked_at
        if ready == 0:
            self.caught_up(asked_at)

    # -- ticks -----------------------------------------------------------------------------------
    def packed(self, partitions: Iterable[int], now: float) -> None:
        for p in partitions:
            self.last_pack[p] = now

    def due_ticks(self, now: float, partitions: int) -> list[int]:
        """Worker-events partitions owed an empty pack now (none between ticks or when disconnected)."""
        if not self.connected or self.next_tick is None or now < self.next_tick:
            return []
        since = self.next_tick - self.tick_seconds
        self.next_tick = self.next_tick + self.tick_seconds if now - self.next_tick < self.tick_seconds else now + self.tick_seconds
        return [p for p in range(partitions) if self.last_pack.get(p, -math.inf) < since]

    def until_tick(self, now: float) -> float:
        return max(0.0, self.next_tick - now) if self.next_tick is not None else self.tick_seconds
