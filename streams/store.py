"""Keeping a RocksDB table store across restarts, and dropping only what cannot be trusted.

With ``STREAMS_STORE=rocksdb://`` each table partition lives in its own database under
``STREAMS_DATA_DIR`` together with the changelog offset Faust's recovery resumes after (written
when the changelog record of a write was acknowledged). A restart then reads only the changelog
past that offset instead of the whole changelog: on a persistent volume, restarts are fast.

Why a kept store is right after a crash too: a table write reaches the local database at once and
the changelog only once Kafka acknowledges it, but the pack that caused it is committed only after
that acknowledgement (streams.outbox). A kill -9 in between leaves the pack uncommitted; the
restarted worker reads it again, its events are then duplicates of the local state, and a
duplicate republishes the task's record and rewrites its changelog record (``Published`` in
streams.folders starts empty in a new process), so nothing stays missing downstream.

What cannot be trusted, and is dropped (that partition is rebuilt from its changelog):
* a persisted offset at or past the changelog's high watermark: the changelog is shorter than
  what this store has read -- the topic was deleted and re-created, or the store belongs to
  another Kafka cluster (the dev stack's Tansu on memory storage forgets every topic on restart);
* a persisted offset below the changelog's first offset minus one: records after it were
  deleted, so recovery could not replay them;
* a partition the changelog does not have (TOPIC_PARTITIONS lowered) or a changelog that is gone;
* a database that cannot be read: after a start that did not follow a clean stop (a crash, a
  kill -9, a power loss), every partition database is read through once before it is trusted, so
  a corrupt block is found here rather than by a crash loop of the worker.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterable

from . import compat
from .config import Settings
from .connections import librdkafka_options
from .errors import DependencyError

log = logging.getLogger("streams.store")
WATERMARK_TIMEOUT = 10.0
CLEAN_STOP = ".clean-stop"  # in the table directory: the last worker using it stopped gracefully


def mark_clean_stop(tabledir: Path) -> None:
    """Called when the worker stops gracefully: the next start need not read the stores through."""
    if Path(tabledir).is_dir():
        (Path(tabledir) / CLEAN_STOP).write_text("")


def changelog_name(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


def untrusted(persisted: int | None, low: int | None, high: int | None) -> str | None:
    """Why a partition store whose persisted offset is ``persisted`` cannot be trusted against a
    changelog partition holding offsets ``low``..``high - 1`` (None: the partition does not
    exist), or None when it can. Pure."""
    if high is None or low is None:
        return "its changelog partition does not exist"
    if persisted is None:
        return None  # nothing read yet: recovery reads the whole changelog anyway
    if persisted >= high:
        return f"it has read the changelog up to offset {persisted}, which ends at {high - 1}"
    if persisted + 1 < low:
        return f"the changelog was deleted up to offset {low - 1}, past what it has read ({persisted})"
    return None


def drop_untrusted_stores(settings: Settings, tabledir: Path, tables: Iterable[str], watermarks=None) -> list[Path]:
    """Delete the partition databases of ``tables`` under ``tabledir`` that cannot be trusted;
    returns the paths deleted. ``watermarks(topic, partitions) -> {partition: (low, high)}``
    defaults to asking Kafka."""
    watermarks = watermarks or (lambda topic, partitions: changelog_watermarks(settings, topic, partitions))
    marker = Path(tabledir) / CLEAN_STOP
    clean = marker.exists()
    marker.unlink(missing_ok=True)  # until this run stops gracefully
    dropped = []
    for table in tables:
        paths = compat.rocksdb_partition_paths(tabledir, table)
        if not paths:
            continue
        try:
            marks = watermarks(changelog_name(settings, table), sorted(paths))
        except Exception as exc:  # noqa: BLE001 - no answer: the store cannot be checked, and is not used unchecked
            raise DependencyError(f"cannot check the RocksDB store in {tabledir} against {changelog_name(settings, table)} "
                               f"(is Kafka at {settings.kafka_bootstrap} reachable?): {exc}") from exc
        for partition, path in sorted(paths.items()):
            try:
                persisted = compat.rocksdb_persisted_offset(path)
                if not clean:  # the last run did not stop gracefully: read it through (checksums)
                    compat.rocksdb_verify(path)
            except Exception as exc:  # noqa: BLE001 - unreadable (corrupt, another version): rebuild it
                reason = f"it cannot be read ({exc})"
            else:
                low, high = marks.get(partition, (None, None))
                reason = untrusted(persisted, low, high)
            if reason:
                log.warning("RocksDB store %s: rebuilding it from the changelog: %s", path, reason)
                shutil.rmtree(path, ignore_errors=True)
                dropped.append(path)
    kept = sum(len(compat.rocksdb_partition_paths(tabledir, t)) for t in tables)
    if kept:
        log.info("RocksDB stores kept in %s: %d partition(s); recovery reads their changelogs from where they left off", tabledir, kept)
    return dropped


def changelog_watermarks(settings: Settings, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(first offset, high watermark) of some partitions of a topic; a partition the topic does not
    have is absent. The high watermark comes from a Fetch response with Tansu (its ListOffsets
    answer is wrong: streams.tansu)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**librdkafka_options(settings), "group.id": "celery-monitor-store-check", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=WATERMARK_TIMEOUT).topics.get(topic)
        existing = set(metadata.partitions) if metadata is not None and metadata.error is None else set()
        wanted = [p for p in partitions if p in existing]
        highs: dict[int, int] = {}
        if settings.tansu_fixes and wanted:
            from .tansu import fetch_highwaters

            tps = [TopicPartition(topic, p) for p in wanted]
            highs = {tp.partition: high for tp, high in fetch_highwaters(settings.kafka_bootstrap.split(","), tps).items()}
        out = {}
        for p in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=WATERMARK_TIMEOUT)
            out[p] = (low, highs.get(p, high))
        return out
    finally:
        consumer.close()
