"""The events of one bridge flush -> packs, one Kafka record per (topic, partition) (pure).

A pack (schemas/pack.v2.json) holds every event of one flush bound for one partition of one
topic, in receive order, bounded in bytes. The partition of an event is what Kafka's default
partitioner gives its key (murmur2, as Java, kafka-python, aiokafka and librdkafka's
``murmur2_random`` compute it): task events by task uuid, worker events by ``cluster/hostname``.
So a task's events — and a worker's — stay on one partition whichever bridge packs them, and a
second bridge or a replay agrees. The record key is null: the partition is the pack's.

Worker-events packs also carry ``seen``: for the task events of the flush (not ``task-sent``,
which comes from a client, not a worker), per worker hostname mapped to that partition, the last
time the bridge received one, the worker's latest timestamp and the count — any event from a
worker is a sign of life (Celery's ``State`` does the same with ``local_received``), delivered in
the worker's partition in receive order. ``read_until`` on every pack: the monitor-clock time up
to which this bridge has read everything the broker had for it (bridge/receiver.py sets it).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from typing import Callable, Iterable, NamedTuple

import orjson

from streams.engine.events import worker_key
from .envelope import TASK, WORKER, Entry, Routed, dead_record

PACK_VERSION = 2
PACK_MAX_BYTES = 512 * 1024
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")
_HASH_CACHE_MAX = 200_000  # key -> hash; a task's events span several flushes


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (org.apache.kafka.common.utils.Utils.murmur2), unsigned 32 bits.

    Same values as ``kafka.partitioner.default.murmur2`` (kafka-python), read four bytes at a
    time (about twice as fast in CPython).
    """
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:end]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra >= 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Seen(NamedTuple):
    """Sign of life of one worker from task events of one flush (a pack's ``seen`` entry)."""

    hostname: str
    received_at: float
    timestamp: float
    events: int

    def as_json(self) -> dict:
        return {"hostname": self.hostname, "received_at": self.received_at, "timestamp": self.timestamp, "events": self.events}


class Packer:
    """Groups a flush's entries into packs; one Packer per cluster (its cluster and bridge id are
    on every pack).

    ``max_bytes``: a pack is closed before it would pass this size (``BRIDGE_PACK_MAX_BYTES``);
    an event larger than that travels alone in its pack, up to ``max_message_bytes`` (what the
    producer may send in one record); a larger one becomes a dead letter.
    """

    def __init__(self, cluster: str, bridge_id: str, max_bytes: int = PACK_MAX_BYTES, max_message_bytes: int = 4 * 1024 * 1024):
        self.cluster = cluster
        self.bridge_id = bridge_id
        self.max_bytes = max_bytes
        self.max_message_bytes = max_message_bytes
        self._hashes: dict[bytes, int] = {}

    # -- partitions ----------------------------------------------------------------------------
    def partition(self, key: bytes, partitions: int) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= _HASH_CACHE_MAX:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h % partitions

    # -- packing -------------------------------------------------------------------------------
    def pack(self, entries: Iterable[Entry], read_until: float, partitions: Callable[[str], int]) -> tuple[list[Routed], list[Routed]]:
        """(packs, dead letters) for one flush. ``partitions(kind)``: partition count of its topic.

        Packs come out per topic and partition in first-seen order, each pack's events in receive
        order. An event that cannot be encoded or is too large for one Kafka record becomes a
        dead letter; the others are packed as usual (one bad event never costs its pack).
        """
        counts = {TASK: partitions(TASK), WORKER: partitions(WORKER)}
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        seen: dict[int, dict[str, list]] = defaultdict(dict)  # worker partition -> hostname -> [recv, ts, n]
        dead: list[Routed] = []
        dumps, partition = orjson.dumps, self.partition
        workers = counts[WORKER]
        for kind, key, item in entries:
            try:
                encoded = dumps(item)
            except TypeError as exc:  # e.g. an integer beyond 64 bits
                dead.append(dead_record(self.cluster, self.bridge_id, f"event cannot be re-encoded: {exc}", item["event"], item.get("routing_key")))
                continue
            group = groups.get((kind, p := partition(key, counts[kind])))
            if group is None:
                group = groups[(kind, p)] = []
            group.append((key, encoded))
            if kind == TASK:
                event = item["event"]
                hostname = event.get("hostname")
                if hostname and hostname.__class__ is str and event.get("type") != "task-sent":
                    ts = event.get("timestamp")
                    if ts.__class__ is float or (isinstance(ts, (int, float)) and ts.__class__ is not bool):
                        wp = partition(worker_key(self.cluster, hostname).encode(), workers)
                        mark = seen[wp].get(hostname)
                        received = item["received_at"]
                        if mark is None:
                            seen[wp][hostname] = [received, ts, 1]
                        else:
                            mark[0] = max(mark[0], received)
                            mark[1] = max(mark[1], ts)
                            mark[2] += 1
        for wp in seen:
            groups.setdefault((WORKER, wp), [])
        packs: list[Routed] = []
        for (kind, p), group in groups.items():
            marks = seen.get(p) if kind is WORKER else None
            signs = [Seen(h, m[0], float(m[1]), m[2]) for h, m in marks.items()] if marks else []
            out, too_big = self._split(kind, p, group, signs, read_until)
            packs.extend(out)
            dead.extend(too_big)
        return packs, dead

    def empty(self, partition: int, read_until: float) -> Routed:
        """A tick: an empty worker-events pack that only moves ``read_until`` on its partition."""
        return self._record(WORKER, partition, [], [], read_until)

    def repack(self, failed: Iterable[Routed], read_until: float, partitions: Callable[[str], int], max_bytes: int | None = None) -> tuple[list[Routed], list[Routed]]:
        """The events (and signs of life) of packs Kafka refused, packed again: for a partition
        count that changed, or (``max_bytes``) smaller, for a broker whose size limit is lower than
        ours. A single event a broker refuses for its size becomes a dead letter."""
        counts = {TASK: partitions(TASK), WORKER: partitions(WORKER)}
        limit = max_bytes or self.max_bytes
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        signs: dict[int, list[Seen]] = defaultdict(list)
        dead: list[Routed] = []
        for pack in failed:
            if max_bytes is not None and len(pack.parts) == 1 and not pack.seen:
                dead.append(self._too_big(pack.parts[0][1], len(pack.value), "Kafka refused it for its size"))
                continue
            for key, encoded in pack.parts:
                groups.setdefault((pack.kind, self.partition(key, counts[pack.kind])), []).append((key, encoded))
            for sign in pack.seen:
                wp = self.partition(worker_key(self.cluster, sign.hostname).encode(), counts[WORKER])
                signs[wp].append(sign)
                groups.setdefault((WORKER, wp), [])
        packs: list[Routed] = []
        for (kind, p), group in groups.items():
            out, too_big = self._split(kind, p, group, signs.get(p, []) if kind == WORKER else [], read_until, limit)
            packs.extend(out)
            dead.extend(too_big)
        return packs, dead

    def _split(self, kind: str, partition: int, group: list, signs: list[Seen], read_until: float, limit: int | None = None) -> tuple[list[Routed], list[Routed]]:
        limit = limit or self.max_bytes
        packs: list[Routed] = []
        dead: list[Routed] = []
        overhead = len(self._head(read_until)) + 16  # '"events":[' ... ']}' and the commas' slack
        seen_bytes = len(orjson.dumps([s.as_json() for s in signs])) + 10 if signs else 0
        current: list[tuple[bytes, bytes]] = []
        size = overhead + seen_bytes
        for part in group:
            n = len(part[1]) + 1
            if current and size + n > limit:
                packs.append(self._record(kind, partition, current, signs, read_until))
                signs, current, size = [], [], overhead
            if overhead + n > limit:  # larger than a pack: alone, if Kafka takes it at all
                if overhead + n > self.max_message_bytes:
                    dead.append(self._too_big(part[1], overhead + n, f"more than the {self.max_message_bytes} bytes of one Kafka record"))
                    continue
                packs.append(self._record(kind, partition, [part], [], read_until))
                continue
            current.append(part)
            size += n
        if current or signs or not group:
            packs.append(self._record(kind, partition, current, signs, read_until))
        return packs, dead

    def _head(self, read_until: float) -> bytes:
        return orjson.dumps({"v": PACK_VERSION, "cluster": self.cluster, "bridge": self.bridge_id, "read_until": read_until})

    def _record(self, kind: str, partition: int, parts: list, signs: list[Seen], read_until: float) -> Routed:
        value = b"".join((
            self._head(read_until)[:-1], b',"events":[', b",".join(encoded for _, encoded in parts), b"]",
            (b',"seen":' + orjson.dumps([s.as_json() for s in signs])) if signs else b"", b"}",
        ))  # fmt: skip
        return Routed(kind, None, value, partition, tuple(parts), tuple(signs))

    def _too_big(self, encoded: bytes, size: int, why: str) -> Routed:
        item = orjson.loads(encoded)
        reason = f"event of {size} bytes is too large: {why}"
        return dead_record(self.cluster, self.bridge_id, reason, item.get("event"), item.get("routing_key"))
