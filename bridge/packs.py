"""The events of one bridge flush -> packs, one Kafka record per (topic, partition) (pure).

A pack (schemas/pack.v2.json) holds every event of one flush bound for one partition of one
topic, in receive order, bounded in bytes. The partition of an event is what Kafka's default
partitioner gives its key (murmur2, as Java, kafka-python, aiokafka and librdkafka's
``murmur2_random`` compute it): task events by task uuid, worker events by ``cluster/hostname``.
So a task's events — and a worker's — stay on one partition whichever bridge packs them, and a
second bridge or a replay agrees. The record key is null: the partition is the pack's.

Worker-events packs also carry ``seen``: for the task events of the flush (not ``task-sent``,
which comes from a client, not a worker), per worker hostname (and pid) mapped to that partition, the last
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
from streams.packs import PACK_VERSION
from .envelope import TASK, WORKER, Entry, Routed, dead_record

PACK_MAX_BYTES = 512 * 1024
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")
_HASH_CACHE_MAX = 20_000  # key -> hash: a task's events span several flushes (~3 MB at most)


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
    pid: int | None = None  # the worker process that sent them (a warm shutdown's last events are its own)

    def as_json(self) -> dict:
        out = {"hostname": self.hostname, "received_at": self.received_at, "timestamp": self.timestamp, "events": self.events}
        if self.pid is not None:
            out["pid"] = self.pid
        return out


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
        self._workers: tuple[int, dict[str, int]] = (0, {})  # (worker partitions, hostname -> partition)

    # -- partitions ----------------------------------------------------------------------------
    def partition(self, key: bytes, partitions: int) -> int:
        h = self._hashes.get(key)
        if h is None:
            h = self._hash(key)
        return h % partitions

    def _hash(self, key: bytes) -> int:
        if len(self._hashes) >= _HASH_CACHE_MAX:
            self._hashes.clear()
        h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h

    def worker_partition(self, hostname: str, partitions: int) -> int:
        """The worker-events partition of ``cluster/hostname``."""
        count, cache = self._workers
        if count != partitions:
            cache = {}
            self._workers = (partitions, cache)
        p = cache.get(hostname)
        if p is None:
            if len(cache) >= _HASH_CACHE_MAX:
                cache.clear()
            p = cache[hostname] = partition_of(worker_key(self.cluster, hostname).encode(), partitions)
        return p

    # -- packing -------------------------------------------------------------------------------
    def pack(self, entries: Iterable[Entry], read_until: float, partitions: Callable[[str], int]) -> tuple[list[Routed], list[Routed]]:
        """(packs, dead letters) for one flush. ``partitions(kind)``: partition count of its topic.

        Packs come out per topic and partition in first-seen order, each pack's events in receive
        order. An event that cannot be encoded or is too large for one Kafka record becomes a
        dead letter; the others are packed as usual (one bad event never costs its pack).
        """
        tasks, workers = partitions(TASK), partitions(WORKER)
        # Hot loop (every event of the bridge): lookups inlined, one list per partition.
        by_task: list[list | None] = [None] * tasks
        by_worker: list[list | None] = [None] * workers
        first_seen: list[tuple[str, int]] = []  # (kind, partition) in first-seen order
        seen: dict[int, dict[str, list]] = {}  # worker partition -> hostname -> [received_at, timestamp, count]
        hashes, hash_of = self._hashes, self._hash
        worker_partition = self.worker_partition
        last_host, last_pid, last_mark = None, None, None  # a task.multi body comes from one worker
        for entry in entries:
            kind, key, item = entry
            h = hashes.get(key)
            if h is None:
                h = hash_of(key)
            if kind == TASK:
                p = h % tasks
                group = by_task[p]
                if group is None:
                    group = by_task[p] = []
                    first_seen.append((TASK, p))
                event = item["event"]
                hostname = event.get("hostname")
                if hostname and hostname.__class__ is str and event.get("type") != "task-sent":
                    ts = event.get("timestamp")
                    if ts.__class__ is float or ts.__class__ is int:
                        received = item["received_at"]
                        pid = event.get("pid")
                        if pid.__class__ is not int:
                            pid = None
                        if hostname == last_host and pid == last_pid:
                            mark = last_mark
                        else:
                            wp = worker_partition(hostname, workers)
                            marks = seen.get(wp)
                            if marks is None:
                                marks = seen[wp] = {}
                            mark = marks.get((hostname, pid))
                            if mark is None:
                                mark = marks[(hostname, pid)] = [received, ts, 0]
                            last_host, last_pid, last_mark = hostname, pid, mark
                        if received > mark[0]:
                            mark[0] = received
                        if ts > mark[1]:
                            mark[1] = ts
                        mark[2] += 1
            else:
                p = h % workers
                group = by_worker[p]
                if group is None:
                    group = by_worker[p] = []
                    first_seen.append((WORKER, p))
            group.append((key, item))
        for wp in seen:
            if by_worker[wp] is None:
                by_worker[wp] = []
                first_seen.append((WORKER, wp))
        packs: list[Routed] = []
        dead: list[Routed] = []
        for kind, p in first_seen:
            if kind == TASK:
                self._split(TASK, p, by_task[p], [], read_until, self.max_bytes, packs, dead)
            else:
                marks = seen.get(p)
                signs = [Seen(h, m[0], float(m[1]), m[2], pid) for (h, pid), m in marks.items()] if marks else []
                self._split(WORKER, p, by_worker[p], signs, read_until, self.max_bytes, packs, dead)
        return packs, dead

    def empty(self, partition: int, read_until: float) -> Routed:
        """A tick: an empty worker-events pack that only moves ``read_until`` on its partition."""
        return self._record(WORKER, partition, [], (), (), read_until)

    def repack(self, failed: Iterable[Routed], read_until: float, partitions: Callable[[str], int], max_bytes: int | None = None) -> tuple[list[Routed], list[Routed]]:
        """The events (and signs of life) of packs Kafka refused, packed again: for a partition
        count that changed, or (``max_bytes``) smaller, for a broker whose size limit is lower than
        ours. A single event a broker refuses for its size becomes a dead letter."""
        counts = {TASK: partitions(TASK), WORKER: partitions(WORKER)}
        groups: dict[tuple[str, int], list[tuple[bytes, dict]]] = {}
        signs: dict[int, list[Seen]] = defaultdict(list)
        packs: list[Routed] = []
        dead: list[Routed] = []
        for pack in failed:
            if max_bytes is not None and len(pack.parts) == 1 and not pack.seen:
                dead.append(self._too_big(pack.parts[0][1], len(pack.value), "Kafka refused it for its size"))
                continue
            for key, item in pack.parts:
                groups.setdefault((pack.kind, self.partition(key, counts[pack.kind])), []).append((key, item))
            for sign in pack.seen:
                wp = self.worker_partition(sign.hostname, counts[WORKER])
                signs[wp].append(sign)
                groups.setdefault((WORKER, wp), [])
        for (kind, p), group in groups.items():
            self._split(kind, p, group, signs.get(p, []) if kind == WORKER else [], read_until, max_bytes or self.max_bytes, packs, dead)
        return packs, dead

    def _split(self, kind: str, partition: int, group: list, signs: list[Seen], read_until: float, limit: int, packs: list, dead: list) -> None:
        """Encode one partition's entries into packs of at most ``limit`` bytes (appended to
        ``packs``); an entry that cannot go into any pack goes to ``dead``. Encoded bytes live only
        until their pack is joined (orjson's buffers are larger than their bytes)."""
        dumps = orjson.dumps
        overhead = len(self._head(read_until)) + 16  # '"events":[' ... ']}' and the commas' slack
        sign_bytes = len(orjson.dumps([s.as_json() for s in signs])) + 10 if signs else 0
        if group:
            # The common case in one C call: the whole partition's entries fit in one pack.
            try:
                array = dumps([item for _, item in group])
            except TypeError:
                array = None  # some entry cannot be encoded: find it below
            if array is not None and overhead + sign_bytes + len(array) <= limit:
                packs.append(self._record(kind, partition, None, group, signs, read_until, array))
                return
        parts, encoded, size = [], [], overhead + sign_bytes
        for key, item in group:
            try:
                data = dumps(item)
            except TypeError as exc:  # e.g. an integer beyond 64 bits
                reason = f"event cannot be re-encoded: {exc}"
                dead.append(dead_record(self.cluster, self.bridge_id, reason, item["event"], item.get("routing_key")))
                continue
            n = len(data) + 1
            if parts and size + n > limit:
                packs.append(self._record(kind, partition, encoded, parts, signs, read_until))
                signs, parts, encoded, size = (), [], [], overhead
            if overhead + n > limit:  # larger than a pack: alone, if Kafka takes it at all
                if overhead + n > self.max_message_bytes:
                    dead.append(self._too_big(item, overhead + n, f"more than the {self.max_message_bytes} bytes of one Kafka record"))
                else:
                    packs.append(self._record(kind, partition, [data], [(key, item)], (), read_until))
                continue
            parts.append((key, item))
            encoded.append(data)
            size += n
        if parts or signs or not group:
            packs.append(self._record(kind, partition, encoded, parts, signs, read_until))

    def _head(self, read_until: float) -> bytes:
        return orjson.dumps({"v": PACK_VERSION, "cluster": self.cluster, "bridge": self.bridge_id, "read_until": read_until})

    def _record(self, kind: str, partition: int, encoded: list[bytes] | None, parts: list, signs, read_until: float, array: bytes = b"") -> Routed:
        """One pack; its events either ``encoded`` one by one or already as a JSON ``array``."""
        value = b"".join((
            self._head(read_until)[:-1], b',"events":', array or b"[" + b",".join(encoded or ()) + b"]",
            (b',"seen":' + orjson.dumps([s.as_json() for s in signs])) if signs else b"", b"}",
        ))  # fmt: skip
        return Routed(kind, None, value, partition, tuple(parts), tuple(signs))

    def _too_big(self, item: dict, size: int, why: str) -> Routed:
        reason = f"event of {size} bytes is too large: {why}"
        return dead_record(self.cluster, self.bridge_id, reason, item.get("event"), item.get("routing_key"))
