"""Every private name of faust-streaming, aiokafka and Faust's RocksDB store this project uses.

Nothing else in the project touches a private attribute of a dependency: each use is a small
function here with the reason and the upstream issue, and ``tests/unit/test_compat.py`` checks
every name against the installed versions, so an upgrade that removes or renames one fails CI
instead of a production worker. The tested range is pinned in pyproject.toml.

Why each is needed:
* faust-streaming/faust#596 (open): Faust drops records it fetched while tables recovered and
  may then commit past them. ``streams.stalls`` follows offsets, reads lost records back and must
  (a) hold Faust's commits at the hole -- the consumer's ``_new_offset``, ``_committed_offset``,
  ``_acked``, ``_acked_index`` -- and (b) fold a read-back record as "the current event", which
  Faust's RocksDB store reads the partition of a write from (``faust.streams._current_event``).
* Tansu (the dev stack's broker) answers ListOffsets(LATEST) wrongly and a Fetch only when its
  max-wait runs out (streams/tansu.py): Faust's end-offset lookup
  (``AIOKafkaConsumerThread._highwaters``) and aiokafka's fetch wait (``_fetch_max_wait_ms``,
  hard-coded by Faust's driver at 1,500 ms) are corrected, with KAFKA_FLAVOR=tansu only.
* Faust's RocksDB store keeps the changelog offset its recovery resumes from under
  ``__faust\\0offset__`` in each partition's database (``faust/stores/rocksdb.py``); the worker
  reads it before Faust starts to decide whether a kept store can be trusted (streams.store).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

# -- faust#596: commit bookkeeping of Faust's consumer (faust/transport/consumer.py) ---------
CONSUMER_PRIVATE = ("_new_offset", "_committed_offset", "_acked", "_acked_index")


def committed_offset(consumer, tp) -> int | None:
    """Faust's record of the group's committed offset of a partition (None: nothing committed)."""
    return consumer._committed_offset.get(tp)


def mark_acked(consumer, tp, offset: int) -> None:
    """Count ``offset`` as acked the way Faust counts its own records' acks."""
    committed = consumer._committed_offset.get(tp) or 0
    if offset >= committed and offset not in consumer._acked_index[tp]:
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)


def hold_commits(consumer, floors: dict) -> None:
    """Make this Faust consumer class refuse to commit a partition past ``floors[tp]`` until that
    offset is acked (the hole is filled)."""
    cls = type(consumer)
    if getattr(cls, "_celery_monitor_floor", False):
        return
    original = cls._new_offset

    def _new_offset(self, tp):
        floor = floors.get(tp)
        if floor is not None:
            committed = self._committed_offset[tp]
            if floor in self._acked_index[tp] or (committed is not None and committed > floor):
                floors.pop(tp, None)  # the hole is filled
            elif self._acked[tp] and min(self._acked[tp]) > floor:
                return None
        return original(self, tp)

    cls._new_offset = _new_offset
    cls._celery_monitor_floor = True


# -- faust#596: the current event (faust/streams.py) ------------------------------------------
@contextmanager
def as_current_event(record) -> Iterator[None]:
    """Process a read-back record outside the agent's stream as if it were the current event:
    Faust's RocksDB store takes the partition of a write from it."""
    from faust.streams import _current_event

    token = _current_event.set(weakref.ref(record))
    try:
        yield
    finally:
        _current_event.reset(token)


# -- Tansu corrections: Faust's aiokafka driver (faust/transport/drivers/aiokafka.py) --------
def consumer_thread_class():
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    return AIOKafkaConsumerThread


def wrap_highwaters(correct: Callable[[dict], Any]) -> None:
    """Pass every end-offset answer Faust gets (``_highwaters``: ListOffsets LATEST) through
    ``correct(reported) -> awaitable of corrected``."""
    cls = consumer_thread_class()
    if getattr(cls, "_celery_monitor_highwaters", False):
        return
    original = cls._highwaters

    async def _highwaters(self, partitions):
        return await correct(await original(self, partitions))

    cls._highwaters = _highwaters
    cls._celery_monitor_highwaters = True


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Make the aiokafka consumer Faust creates wait at most ``max_wait_ms`` per Fetch (Faust's
    driver passes no setting for it; aiokafka reads ``_fetch_max_wait_ms`` when its fetcher starts)."""
    cls = consumer_thread_class()
    if getattr(cls, "_celery_monitor_short_fetches", False):
        return
    original = cls._create_worker_consumer

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    cls._create_worker_consumer = _create_worker_consumer
    cls._celery_monitor_short_fetches = True


# -- Faust's RocksDB store layout (faust/stores/rocksdb.py) -----------------------------------
ROCKSDB_OFFSET_KEY = b"__faust\0offset__"


def rocksdb_partition_paths(tabledir: Path, table: str) -> dict[int, Path]:
    """The per-partition databases Faust keeps for ``table``: ``<tabledir>/<table>-<partition>.db``
    (``Store.partition_path``)."""
    out = {}
    for path in Path(tabledir).glob(f"{table}-*.db"):
        suffix = path.name[len(table) + 1 : -3]
        if suffix.isdigit():
            out[int(suffix)] = path
    return out


def rocksdb_persisted_offset(path: Path) -> int | None:
    """The changelog offset Faust's recovery resumes after for one partition database, read
    without Faust (``Store.persisted_offset``); None when it holds none."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        value = db.get(ROCKSDB_OFFSET_KEY)
    finally:
        db.close()
    return None if value is None else int(value)


def rocksdb_verify(path: Path) -> None:
    """Read every key and value of a partition database (RocksDB checks each block's checksum as
    it reads it); raises on corruption."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        it = db.iter()  # not items(): that iterator ends quietly at a corrupt block
        it.seek_to_first()
        while it.valid():
            it.value()
            it.next()
        it.status()  # raises the error that ended the iteration, if any
        del it
    finally:
        db.close()


# -- what tests/unit/test_compat.py checks -------------------------------------------------------
def private_names() -> list[tuple[str, Callable[[], Any]]]:
    """(description, getter) of every private name above: each getter raises if it is gone."""
    from faust.stores import rocksdb as faust_rocksdb
    from faust.transport.consumer import Consumer as FaustConsumer

    def consumer_attribute(name):
        def get():
            import inspect

            source = inspect.getsource(FaustConsumer)
            if name == "_new_offset":
                return FaustConsumer._new_offset
            assert f"self.{name}" in source, f"faust Consumer no longer sets self.{name}"
            return name

        return get

    def current_event():
        from faust.streams import _current_event

        return _current_event

    def fetch_wait():
        import inspect

        from aiokafka.consumer.fetcher import Fetcher

        assert "_fetch_max_wait_ms" in inspect.getsource(__import__("aiokafka.consumer.consumer", fromlist=["x"]))
        return Fetcher

    def offset_key():
        assert faust_rocksdb.Store.offset_key == ROCKSDB_OFFSET_KEY
        source = __import__("inspect").getsource(faust_rocksdb.Store.partition_path)
        assert '-{partition}' in source
        return faust_rocksdb.Store.offset_key

    return [
        *[(f"faust Consumer.{n} (faust#596)", consumer_attribute(n)) for n in CONSUMER_PRIVATE],
        ("faust.streams._current_event (faust#596)", current_event),
        ("AIOKafkaConsumerThread._highwaters (Tansu ListOffsets)", lambda: consumer_thread_class()._highwaters),
        ("AIOKafkaConsumerThread._create_worker_consumer (Tansu fetch wait)", lambda: consumer_thread_class()._create_worker_consumer),
        ("aiokafka AIOKafkaConsumer._fetch_max_wait_ms (Tansu fetch wait)", fetch_wait),
        ("faust rocksdb Store.offset_key and partition_path layout", offset_key),
    ]
