"""The ClickHouse client of every part of the pipeline (sink, UI, migrate, report, check): the
only module that imports clickhouse-driver. Host, credentials and TLS come from the settings
through ``streams.connections.clickhouse_options``."""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from .config import Settings
from .connections import clickhouse_options

log = logging.getLogger(__name__)

# Network-level failures: ClickHouse is down or unreachable -> retry, never drop.
UNAVAILABLE = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, ConnectionError, OSError, EOFError)


# Server error code of a query stopped by max_execution_time (TIMEOUT_EXCEEDED).
TIMEOUT_EXCEEDED = 159


class ClickHouseUnavailable(RuntimeError):
    """ClickHouse could not be reached; the caller retries with backoff."""


def connect(settings: Settings, with_database: bool = True, timeout: float = 60.0, query_settings: dict | None = None) -> Client:
    """A clickhouse-driver client; ``timeout`` = socket send/receive timeout (s), ``query_settings``
    = ClickHouse settings sent with every query (e.g. the UI's max_execution_time)."""
    return Client(
        **clickhouse_options(settings, with_database),
        connect_timeout=min(5.0, timeout),
        send_receive_timeout=timeout,
        sync_request_timeout=min(5.0, timeout),  # the ping before a query on an idle connection
        settings={"use_numpy": False, **(query_settings or {})},
    )


def timed_out(exc: BaseException) -> bool:
    """True when ``exc`` means the query took too long: the server stopped it (max_execution_time)
    or the socket timeout ran out first."""
    if isinstance(exc, (ch_errors.SocketTimeoutError, TimeoutError)):  # TimeoutError = socket.timeout
        return True
    return isinstance(exc, ch_errors.ServerException) and getattr(exc, "code", None) == TIMEOUT_EXCEEDED


class ClickHouseWriter:
    """Inserts whole batches; a batch either lands or raises (the caller decides to retry)."""

    def __init__(self, settings: Settings, client: Client | None = None):
        self.database = settings.clickhouse_database
        self.client = client or connect(settings)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        try:
            # Column-wise: zip transposes in C; the driver's own row-to-column pass was 6 % of the sink.
            self.client.execute(sql, list(zip(*rows)), types_check=False, columnar=True)
        except UNAVAILABLE as exc:
            self.client.disconnect()
            raise ClickHouseUnavailable(f"insert into {table} failed: {exc}") from exc
        return len(rows)

    def insert_columns(self, table: str, columns: Sequence[str], values: Sequence[list]) -> int:
        """Insert rows given column by column (``values[i]`` is the list of column ``columns[i]``)."""
        count = len(values[0]) if values else 0
        if not count:
            return 0
        sql = f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES"
        try:
            self.client.execute(sql, list(values), types_check=False, columnar=True)
        except UNAVAILABLE as exc:
            self.client.disconnect()
            raise ClickHouseUnavailable(f"insert into {table} failed: {exc}") from exc
        return count

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self.client.execute(sql, params or {})

    def close(self) -> None:
        self.client.disconnect()
