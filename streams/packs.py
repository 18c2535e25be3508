"""Decoder for the bridge's packs (schemas/pack.v2.json), for any downstream consumer.

Pure: orjson only (no Faust, no engine), so a consumer of ``celery.task-events.v2`` /
``celery.worker-events.v2`` can copy or import it alone::

    from streams.packs import decode_pack, InvalidPack

    pack = decode_pack(record.value)          # raises InvalidPack(reason) on a bad value
    for entry in pack.entries:                # receive order; entry.event is the Celery event as sent
        print(pack.cluster, entry.seq, entry.routing_key, entry.event["type"])
    pack.read_until                           # everything the bridge had before this time is in this
                                              # partition's packs up to here (worker expiry judges by it)
    pack.seen                                 # worker-events packs: signs of life from task events

One Kafka record = one pack = the events of one bridge flush bound for one partition of one topic.
A bridge restart or a redelivery may pack the same events differently: count events by their
identity (type, uuid or hostname, pid, clock, timestamp), not by pack.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import orjson

PACK_VERSION = 2  # the one definition: the bridge writes it, the engine, the sink and this decoder read it


def loads(value: bytes | bytearray | memoryview | str) -> Any:
    """JSON as Celery's own receiver reads it (kombu's JSON is Python's ``json``), fast.

    orjson first; where it refuses, Python's ``json`` (raises ``ValueError`` when that refuses
    too). What only ``json`` reads -- a lone surrogate escape such as ``"\\udcff"`` (a Latin-1
    file name in a traceback, written by kombu's ``json.dumps``), NaN/Infinity, integers beyond
    64 bits -- is read. A lone surrogate is not Unicode: no UTF-8 writer (orjson, msgspec,
    ClickHouse's driver) can write it, so each one becomes the text of its escape (``\\udcff``,
    six characters, as Python's ``backslashreplace`` writes it); nothing else changes.
    """
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    if isinstance(value, memoryview):
        value = value.tobytes()
    try:
        return clean(json.loads(value))
    except RecursionError:  # nesting deeper than Python's stack (orjson stops at 1024 levels)
        raise ValueError("nesting too deep") from None


def clean(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) written as its escape text."""
    cls = value.__class__
    if cls is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if cls is list:
        return [clean(v) for v in value]
    if cls is dict:
        return {clean(k): clean(v) for k, v in value.items()}
    return value


class InvalidPack(ValueError):
    """A record value that is not a v2 pack; ``reason`` says what is wrong."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Entry(NamedTuple):
    seq: int  # per bridge process, restarts at 1 with it
    received_at: float  # epoch seconds: when the bridge got the broker message
    routing_key: str | None  # task.multi, worker.heartbeat, ...
    event: Any  # the Celery event as the producer sent it (a dict for every event the bridge routes)
    redacted: tuple[str, ...]  # fields the bridge redacted (BRIDGE_REDACT_*), () when none


class Seen(NamedTuple):
    hostname: str
    received_at: float  # latest receive time of a task event from this worker in the flush
    timestamp: float  # the worker's own clock: latest event timestamp
    events: int  # task events from this worker in the flush
    pid: int | None = None  # the worker process that sent them (None: an older bridge's pack)


class Pack(NamedTuple):
    cluster: str
    bridge: str
    read_until: float  # monitor clock; 0 until the bridge first caught up with its broker
    entries: tuple[Entry, ...]
    seen: tuple[Seen, ...]


def decode_pack(value: bytes | bytearray | memoryview | None) -> Pack:
    """One Kafka record value -> Pack. Raises InvalidPack (never another error) on bad input."""
    if value is None:
        raise InvalidPack("empty record value")
    try:
        raw = loads(value)
    except ValueError as exc:
        raise InvalidPack(f"not JSON: {exc}") from None
    return pack_from_json(raw)


def pack_from_json(raw: Any) -> Pack:
    """An already decoded JSON value -> Pack (raises InvalidPack)."""
    if raw.__class__ is not dict:
        raise InvalidPack(f"a pack is a JSON object, not {type(raw).__name__}")
    if raw.get("v") != PACK_VERSION:
        raise InvalidPack(f"pack version {raw.get('v')!r}, expected {PACK_VERSION}")
    cluster, bridge, read_until = raw.get("cluster"), raw.get("bridge"), raw.get("read_until")
    if cluster.__class__ is not str or bridge.__class__ is not str:
        raise InvalidPack("pack 'cluster' and 'bridge' must be strings")
    if not _number(read_until):
        raise InvalidPack("pack 'read_until' must be a number")
    events = raw.get("events")
    if events.__class__ is not list:
        raise InvalidPack("pack 'events' must be a list")
    entries = []
    for i, item in enumerate(events):
        if item.__class__ is not dict or "event" not in item:
            raise InvalidPack(f"events[{i}] is not an entry object with an 'event'")
        seq, received_at = item.get("seq"), item.get("received_at")
        if seq.__class__ is not int or not _number(received_at):
            raise InvalidPack(f"events[{i}]: 'seq' must be an integer and 'received_at' a number")
        redacted = item.get("redacted") or ()
        entries.append(Entry(seq, float(received_at), item.get("routing_key"), item["event"], tuple(redacted)))
    seen = []
    for i, item in enumerate(raw.get("seen") or ()):
        if item.__class__ is not dict:
            raise InvalidPack(f"seen[{i}] is not an object")
        hostname, received_at, timestamp, count = (item.get(k) for k in ("hostname", "received_at", "timestamp", "events"))
        if hostname.__class__ is not str or not _number(received_at) or not _number(timestamp) or count.__class__ is not int:
            raise InvalidPack(f"seen[{i}] needs hostname (string), received_at and timestamp (numbers), events (integer)")
        pid = item.get("pid")
        if pid is not None and pid.__class__ is not int:
            raise InvalidPack(f"seen[{i}]: 'pid' must be an integer")
        seen.append(Seen(hostname, float(received_at), float(timestamp), count, pid))
    return Pack(cluster, bridge, float(read_until), tuple(entries), tuple(seen))


def _number(value: Any) -> bool:
    return value.__class__ is float or value.__class__ is int
