"""Canonical JSON bytes of an engine state: equal states give equal bytes.

The only non-JSON value in a state is the ``ids`` set; it is written as a sorted list and every
object's keys are sorted, so two states built from the same events in different orders
serialize identically (the property tests compare states this way).
"""

from __future__ import annotations

import orjson


def _default(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS)
