"""Everything the streams worker writes, through one librdkafka producer; offsets move after acks.

Why not Faust's producer: every record Faust sends (``topic.send`` and each table write's
changelog record) costs 65-70 µs of its Python machinery, which was most of the worker's time
once packs took the per-input cost away (issue 13's measurements); librdkafka's ``produce`` is a
few µs. Faust stays in charge of what it does well: group membership, partition assignment,
table recovery and standbys.

The contract, per source record (a pack): the agent produces every record the pack caused --
state records, alerts, dead letters, changelog writes -- into a :class:`Receipt`, and the pack's
Faust event is acked (its offset may be committed) only once librdkafka acknowledged all of them.
Nothing waits per record: the agent goes on with the next pack while earlier ones are in flight,
and acks arrive in order per partition because librdkafka keeps one request in flight per
broker connection.

Seams into Faust, all through public names:
* ``stream.noack()`` and ``Event.ack()``: manual acks (faust docs, "Streams: noack").
* :class:`OutboxTable` overrides ``Collection.send_changelog`` (public) to produce the exact
  bytes Faust would (``changelog_topic.prepare_key/prepare_value``) on the same partition, and
  on delivery records ``data.set_persisted_offset`` as Faust's own ``_on_changelog_sent`` does
  (the RocksDB store's "where recovery resumes" bookkeeping).
* :meth:`OutboxTable.put` / :meth:`OutboxTable.fetch`: the agents' own reads and writes go to
  the table's store (``Collection.data``) and its changelog directly. ``table[key] = value``
  runs Faust's per-key machinery (sensors, TTL bookkeeping for windowed tables, key
  serialization through its schema): about 40 µs a write here, half the worker's time on a
  backlog. The changelog record is the same bytes at the same partition, so recovery and
  standbys are unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, Callable

import faust
import orjson
from confluent_kafka import Producer
from faust.types import TP

log = logging.getLogger("streams.outbox")

QUEUE_HIGH_WATER = 200_000  # records in librdkafka's queue before the agents wait (back-pressure)
POLL_INTERVAL = 0.002  # seconds between delivery-report polls while records are in flight


class DeliveryFailed(RuntimeError):
    """librdkafka gave up on a record: the worker stops so its pack is re-read after a restart."""


class Receipt:
    """The records one source record caused; ``on_done`` runs once all are acknowledged.

    The event loop is the only thread that touches a receipt: delivery reports are served by
    :meth:`Outbox.poll` on the loop.
    """

    __slots__ = ("produced", "delivered", "sealed", "on_done", "errors", "outbox")

    def __init__(self, on_done: Callable[[], None]):
        self.produced = 0
        self.delivered = 0
        self.sealed = False
        self.on_done = on_done
        self.errors: list = []
        self.outbox: Outbox | None = None

    def __call__(self, err, msg) -> None:  # librdkafka's delivery report, one per record
        self.outbox.in_flight -= 1
        self._report(err)

    def seal(self) -> None:
        """No more records will be added: finish now if all were delivered already."""
        self.sealed = True
        if self.delivered == self.produced:
            self._finish()

    def _report(self, err) -> None:
        self.delivered += 1
        if err is not None:
            self.errors.append(err)
        if self.sealed and self.delivered == self.produced:
            self._finish()

    def _finish(self) -> None:
        if self.errors:
            raise DeliveryFailed(f"{len(self.errors)} of {self.produced} records not delivered: {self.errors[0]}")
        self.on_done()


class Outbox:
    """One librdkafka producer shared by the agents and tables of a streams worker."""

    def __init__(self, options: dict, client_id: str):
        self.producer = Producer({
            **options,
            "client.id": client_id,
            "acks": "all",
            # Many small records per pack: wait a moment to fill requests, as Kafka's linger does.
            "linger.ms": 2,
            "batch.size": 1_000_000,
            # Same partition for a key as Faust/aiokafka/Java (murmur2), so output topics keep
            # their partitioning and a task's records stay in order on one partition.
            "partitioner": "murmur2_random",
            # Changelog writes of one key must land in order (the last one is what recovery
            # restores); without idempotence (Tansu) only one request in flight guarantees it.
            "max.in.flight.requests.per.connection": 1,
            # Never give up on a record while the broker is away: the queue bound below turns an
            # outage into back-pressure, and the unacked packs are re-read after a crash.
            "message.timeout.ms": 0,
            "queue.buffering.max.messages": 2 * QUEUE_HIGH_WATER,
            "queue.buffering.max.kbytes": 512 * 1024,
            "error_cb": self._on_client_error,
        })  # fmt: skip
        self.produce = self.producer.produce
        self.in_flight = 0
        self._failure: BaseException | None = None
        self._poller: asyncio.Task | None = None
        self.sent = 0

    def _on_client_error(self, err) -> None:
        level = logging.ERROR if err.fatal() else logging.DEBUG
        log.log(level, "kafka producer: %s", err)

    # -- producing -------------------------------------------------------------------------
    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             receipt: Receipt | None = None, on_delivery: Callable[[Any], None] | None = None) -> None:  # fmt: skip
        """Queue one record (never blocks); ``receipt`` counts it, ``on_delivery(msg)`` runs after its ack."""
        if receipt is not None:
            receipt.produced += 1
        if on_delivery is None and receipt is not None:
            receipt.outbox = self
            delivered = receipt  # the common case: no closure per record
        else:

            def delivered(err, msg, receipt=receipt, on_delivery=on_delivery):
                self.in_flight -= 1
                if err is None and on_delivery is not None:
                    on_delivery(msg)
                if receipt is not None:
                    receipt._report(err)
                elif err is not None:
                    self._fail(DeliveryFailed(f"record to {msg.topic()} not delivered: {err}"))

        self.in_flight += 1
        self.sent += 1
        try:
            if partition is None:
                self.produce(topic, value, key, on_delivery=delivered)
            else:
                self.produce(topic, value, key, partition, on_delivery=delivered)
        except BufferError:  # only past 2 x the high water mark: serve reports and retry once
            self.producer.poll(0.5)
            if partition is None:
                self.produce(topic, value, key, on_delivery=delivered)
            else:
                self.produce(topic, value, key, partition, on_delivery=delivered)

    async def room(self) -> None:
        """Wait while librdkafka holds too many unacknowledged records (Kafka slow or away)."""
        if self._failure is not None:
            raise self._failure
        if len(self.producer) < QUEUE_HIGH_WATER:
            return
        log.warning("%d records waiting for Kafka; holding input until they are acknowledged", len(self.producer))
        while len(self.producer) >= QUEUE_HIGH_WATER // 2:
            self.poll()
            await asyncio.sleep(0.05)

    # -- delivery reports --------------------------------------------------------------------
    def poll(self) -> int:
        try:
            return self.producer.poll(0)
        except DeliveryFailed as exc:  # raised by a receipt's _finish inside a delivery callback
            self._fail(exc)
            return 0

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            log.error("%s", exc)
            self._failure = exc

    async def run(self) -> None:
        """Serve delivery reports on the event loop (so acks and callbacks need no locks)."""
        while True:
            self.poll()
            if self._failure is not None:
                raise self._failure
            await asyncio.sleep(POLL_INTERVAL if self.in_flight else 0.02)

    async def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record is acknowledged (before a commit on stop/rebalance)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight and loop.time() < deadline:
            self.poll()
            await asyncio.sleep(POLL_INTERVAL)
        return not self.in_flight

    def close(self) -> None:
        left = self.producer.flush(10)
        if left:
            log.warning("closing with %d records unacknowledged; their source records were not acked and are re-read", left)


class _Sent:
    """What ``Table.on_key_set`` reads of ``send_changelog``'s result: ``.message.partition``."""

    __slots__ = ("message",)

    def __init__(self, partition: int):
        self.message = SimpleNamespace(partition=partition)


class OutboxTable(faust.Table):
    """A Faust table whose changelog records go out through the :class:`Outbox`.

    ``receipt`` is the receipt of the source record being processed (set by the agent for the
    duration of a pack): a changelog write counts among the records that must be acknowledged
    before that source record's offset may be committed.
    """

    outbox: Outbox
    receipt: Receipt | None = None
    _partition: int | None = None
    persists_offsets: bool = False  # RocksDB: record where changelog recovery resumes

    _changelog_name: str | None = None

    def _name_changelog(self) -> str:
        self._changelog_name = self.changelog_topic.get_topic_name()
        return self._changelog_name

    def fetch(self, key: str) -> bytes | None:
        """The stored value (bytes) of ``key``, or None; inside an agent (the current event's partition)."""
        return self.data.get(key)

    def put(self, key: str, value: bytes, partition: int, receipt: Receipt | None) -> None:
        """``table[key] = value`` without Faust's per-key machinery: the store, then the changelog
        record Faust would send (JSON key, raw value) on ``partition``, counted in ``receipt``."""
        self.data[key] = value
        name = self._changelog_name or self._name_changelog()
        persisted = None
        if self.persists_offsets:

            def persisted(msg, data=self.data):
                data.set_persisted_offset(TP(msg.topic(), msg.partition()), msg.offset())

        self.outbox.send(name, value, orjson.dumps(key), partition, receipt=receipt, on_delivery=persisted)

    def partition_for_key(self, key) -> int | None:
        if self._partition is not None:
            return self._partition
        return super().partition_for_key(key)

    def delete_in(self, partition: int, key) -> None:
        """``del table[key]`` from a timer, which has no current event to take the partition from."""
        self._partition = partition
        try:
            del self[key]
        finally:
            self._partition = None

    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None) -> _Sent:
        topic = self.changelog_topic
        key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        value_bytes, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        name = topic.get_topic_name()

        def persisted(msg, data=self.data):
            data.set_persisted_offset(TP(msg.topic(), msg.partition()), msg.offset())

        self.outbox.send(name, value_bytes, key_bytes, partition, receipt=self.receipt, on_delivery=persisted)
        return _Sent(partition)
