"""The web UI's ClickHouse access: a small pool of clients, every query bounded in time and rows.

Each query runs with ``readonly=2`` (no write can go through the UI, whatever the SQL),
``max_execution_time`` (the server stops a query past UI_QUERY_TIMEOUT), ``max_result_rows``
(a hard cap above UI_ROW_LIMIT whatever a query's LIMIT says) and a socket timeout of
UI_QUERY_TIMEOUT (a stopped or unreachable server cannot hold a page either). Clients are not
thread-safe, and Starlette runs sync endpoints in a thread pool: each query borrows one client.
"""

from __future__ import annotations

import logging
import math
import queue
import time

from streams.config import Settings
from streams.clickhouse import UNAVAILABLE, connect, timed_out

log = logging.getLogger(__name__)

# Rows any single query may return: the page limit plus the lists (clusters, names) and a margin;
# a query over it fails instead of filling the UI's memory.
RESULT_ROWS_MARGIN = 1000


class QueryTimeout(RuntimeError):
    """A query did not finish within UI_QUERY_TIMEOUT seconds (the page says so, 504)."""


class ClickHouseDown(RuntimeError):
    """ClickHouse could not be reached (the page says so, 503)."""


class TooManyRows(RuntimeError):
    """An answer passed the row cap (UI_ROW_LIMIT + a margin): ClickHouse refused it (the page says so, 422)."""


TOO_MANY_ROWS = (158, 396)  # ClickHouse's TOO_MANY_ROWS, TOO_MANY_ROWS_OR_BYTES (max_result_rows)


class Pool:
    """``execute(sql, params) -> (columns, rows)`` over a few reusable clickhouse-driver clients."""

    def __init__(self, settings: Settings, size: int = 8):
        self.settings = settings
        self.timeout = float(settings.ui_query_timeout)
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize=size)
        self.query_settings = {
            "readonly": 2,  # 2 = no writes, but per-query settings (the ones below) are still allowed
            "max_execution_time": max(1, math.ceil(self.timeout)),  # whole seconds on 18.16
            "timeout_overflow_mode": "throw",
            "max_result_rows": settings.ui_row_limit + RESULT_ROWS_MARGIN,
            "result_overflow_mode": "throw",
        }

    def _client(self):
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return connect(self.settings, timeout=self.timeout, query_settings=self.query_settings)

    def _release(self, client) -> None:
        try:
            self._idle.put_nowait(client)
        except queue.Full:
            client.disconnect()

    def execute(self, sql: str, params: dict) -> tuple[list[str], list[tuple]]:
        client = self._client()
        started = time.perf_counter()
        try:
            rows, types = client.execute(sql, params, with_column_types=True)
        except Exception as exc:
            client.disconnect()  # a half-read answer must not be left on a pooled connection
            if timed_out(exc):
                raise QueryTimeout(
                    f"ClickHouse did not answer within {self.timeout:g} s (UI_QUERY_TIMEOUT); narrow the filters or raise the setting"
                ) from exc
            if getattr(exc, "code", None) in TOO_MANY_ROWS:
                raise TooManyRows(
                    f"the answer has more than {self.settings.ui_row_limit:,} rows (UI_ROW_LIMIT); narrow the filters or the window"
                ) from exc
            if isinstance(exc, UNAVAILABLE):
                raise ClickHouseDown(
                    f"ClickHouse at {self.settings.clickhouse_host}:{self.settings.clickhouse_port} is unreachable: {exc}"
                ) from exc
            raise
        self._release(client)
        elapsed = time.perf_counter() - started
        if elapsed > self.timeout / 2:
            log.warning("slow UI query (%.2f s of UI_QUERY_TIMEOUT=%g s): %s", elapsed, self.timeout, " ".join(sql.split())[:200])
        return [name for name, _ in types], rows

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().disconnect()
            except queue.Empty:
                return
