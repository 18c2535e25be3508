"""Task/worker state <-> JSON bytes (what the Faust table changelog carries).

The only non-JSON value in a state is the ``ids`` set; it is written as a sorted list so
equal states always serialize to equal bytes (keys sorted too).
"""

from __future__ import annotations

import orjson

from .fold import TaskState


def _default(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS)


def loads_task_state(data: bytes | str) -> TaskState:
    state = orjson.loads(data)
    state["ids"] = set(state["ids"])
    return state


def loads(data: bytes | str):
    return orjson.loads(data)
