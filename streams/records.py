"""Bytes at the edges of the streams app <-> engine values (pure).

Output records are JSON (schemas/ documents them); dead letters carry the reason, where the
input came from, and the input itself so nothing is lost.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from .engine import Invalid, iter_events
from .engine.codec import exact
from .packs import loads

RECORD_VERSION = 1
MAX_DEAD_LETTER_RAW = 900_000  # a dead letter's bytes at most: larger inputs are cut (and marked so) to fit a Kafka message (1 MB)


def decode(value: bytes | None) -> list:
    """The engine items of one Kafka record value, in order; never raises.

    A bridge pack (schemas/pack.v2.json) gives its events (each with its receive time), a
    Sighting per ``seen`` entry and a Tick for ``read_until``; an unusable entry is one Invalid
    and the rest of the pack still counts. Other shapes ``streams.engine.iter_events`` accepts
    (a v1 envelope, a raw event or task.multi list) decode too.
    """
    if value is None:
        return [Invalid("empty record value", None)]
    try:
        decoded = loads(value)  # orjson, else Python's json as Celery reads it
    except ValueError as exc:
        return [Invalid(f"not JSON: {exc}", value)]
    return list(iter_events(decoded))


def encode(record: dict) -> bytes:
    return exact(orjson.dumps(record))


def dead_letter(invalid: Invalid, source: dict[str, Any], stage: str) -> bytes:
    raw = invalid.raw
    letter: dict[str, Any] = {
        "v": RECORD_VERSION,
        "stage": stage,
        "reason": invalid.reason,
        "source": source,
        "at": time.time(),
    }
    if isinstance(raw, (bytes, bytearray)):
        try:
            letter["raw"] = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            letter["raw_b64"] = base64.b64encode(bytes(raw)).decode()
    else:
        letter["raw"] = raw
    try:
        out = orjson.dumps(letter)
    except TypeError:  # a value orjson cannot write (e.g. an int beyond 64 bits): keep its repr
        letter["raw"] = repr(raw)
        out = orjson.dumps(letter)
    keep = MAX_DEAD_LETTER_RAW // 2
    while len(out) > MAX_DEAD_LETTER_RAW:  # JSON escaping can make a cut text longer: cut until it fits
        letter.pop("raw_b64", None)
        letter["raw"] = repr(raw)[:keep]
        letter["truncated"] = True
        out = orjson.dumps(letter)
        keep //= 2
    return out
