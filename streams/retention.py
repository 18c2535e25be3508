"""`python -m streams retention --keep-months N`: drop month partitions older than N months.

ClickHouse 18.16 (the server here) has no table TTL (it came in 19.6), so retention is a
partition drop, which both old and modern servers run: `events`, `events_per_minute` and
`queue_lengths` are partitioned by month (toYYYYMM). Run it from cron. `tasks`/`workers` keep one row per task or
worker and are not partitioned; on a modern server add a TTL to them if wanted.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

PARTITIONED = ("events", "events_per_minute", "queue_lengths")


def cutoff_month(today: dt.date, keep_months: int) -> int:
    """The oldest YYYYMM kept: the current month and the ``keep_months - 1`` before it."""
    month_index = today.year * 12 + (today.month - 1) - (keep_months - 1)
    return (month_index // 12) * 100 + month_index % 12 + 1


def expired_partitions(execute: Callable, db: str, keep_months: int, today: dt.date) -> list[tuple[str, int]]:
    oldest = cutoff_month(today, keep_months)
    rows = execute(
        "SELECT DISTINCT table, partition FROM system.parts "
        f"WHERE database = '{db}' AND active AND table IN ({', '.join(repr(t) for t in PARTITIONED)}) "
        "ORDER BY table, partition"
    )
    return [(table, int(partition)) for table, partition in rows if int(partition) < oldest]


def drop_expired(execute: Callable, db: str, keep_months: int, today: dt.date | None = None, dry_run: bool = False) -> list[str]:
    if keep_months < 1:
        raise ValueError("--keep-months must be at least 1 (the current month is always kept)")
    statements = [
        f"ALTER TABLE {db}.{table} DROP PARTITION {partition}"
        for table, partition in expired_partitions(execute, db, keep_months, today or dt.date.today())
    ]
    if not dry_run:
        for statement in statements:
            execute(statement)
    return statements
