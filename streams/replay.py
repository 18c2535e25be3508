"""`python -m streams replay FILE... [--at EPOCH]`: the engine over recorded events, no Kafka.

Each input line is one JSON value (an event, a raw task.multi list, a bridge envelope or a
capture record).  Output: one JSON record per line, tasks then workers, each sorted by key.
Invalid lines are reported on stderr with their line number and skipped.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from typing import IO

import orjson

from .engine import Tracker
from .packs import loads
from .engine.states import DEFAULT_EXPIRY_FACTOR

PROGRESS_MIN_BYTES = 5_000_000


def _open(path: str) -> tuple[IO[bytes], int]:
    if path == "-":
        return sys.stdin.buffer, 0
    size = os.path.getsize(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb"), size
    return open(path, "rb"), size


def replay(
    paths: list[str],
    at: float | None = None,
    expiry_factor: float = DEFAULT_EXPIRY_FACTOR,
    out: IO[bytes] | None = None,
    err: IO[str] | None = None,
) -> int:
    out = out or sys.stdout.buffer
    err = err or sys.stderr
    tracker = Tracker(expiry_factor)
    status = 0
    for path in paths:
        try:
            handle, size = _open(path)
        except OSError as exc:
            print(f"{path}: cannot read: {exc}", file=err)
            status = 2
            continue
        lines = handle
        bar = None
        if err.isatty() and size >= PROGRESS_MIN_BYTES:
            from tqdm import tqdm

            bar = tqdm(desc=os.path.basename(path), unit=" lines", file=err)
        try:
            for number, line in enumerate(lines, 1):
                if bar is not None:
                    bar.update()
                if not line.strip():
                    continue
                try:
                    value = loads(line)  # orjson, else Python's json (as Celery reads events)
                except ValueError as exc:
                    print(f"{path}:{number}: not JSON: {exc}", file=err)
                    continue
                for invalid in tracker.feed(value):
                    print(f"{path}:{number}: invalid event: {invalid.reason}", file=err)
        except (OSError, EOFError) as exc:
            print(f"{path}: read failed: {exc}", file=err)
            status = 2
        finally:
            if bar is not None:
                bar.close()
            if handle is not sys.stdin.buffer:
                handle.close()
    write = out.write
    tracker.judge(at, expiry_factor)  # first: the workers found gone orphan their tasks' records
    for record in tracker.task_records():
        write(orjson.dumps(record) + b"\n")
    for record in tracker.worker_records(at, expiry_factor):
        write(orjson.dumps(record) + b"\n")
    if isinstance(out, io.BufferedWriter):
        out.flush()
    return status
