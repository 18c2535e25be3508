"""Which kept RocksDB stores the worker trusts (streams/store.py): a pure rule, then real stores."""

import os

from streams.config import Settings
from streams.store import drop_untrusted_stores, untrusted


def test_a_store_ahead_of_its_changelog_or_behind_its_start_is_not_trusted():
    assert untrusted(None, 0, 10) is None  # never persisted: recovery reads everything anyway
    assert untrusted(9, 0, 10) is None  # read up to the end
    assert untrusted(3, 0, 10) is None  # recovery reads 4..9
    assert "ends at 9" in untrusted(10, 0, 10)  # the changelog is shorter than what it read: re-created
    assert "ends at -1" in untrusted(0, 0, 0)  # an empty changelog (Tansu restarted on memory storage)
    assert "deleted up to offset 49" in untrusted(20, 50, 60)  # records it never read are gone
    assert untrusted(49, 50, 60) is None
    assert "does not exist" in untrusted(5, None, None)


def test_only_untrusted_partitions_are_dropped(tmp_path):
    import faust
    from faust.types import TP

    settings = Settings.load(environ={}, app_id="store-test")
    app = faust.App("store-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("tasks", default=None, partitions=4)
    for partition, offset in ((0, 5), (1, 50), (2, 7)):
        table.data.set_persisted_offset(TP("store-test-tasks-changelog", partition), offset)
    marks = {0: (0, 6), 1: (0, 10), 2: (9, 20)}  # 0: trusted; 1: ahead of the log; 2: log deleted past it
    dropped = drop_untrusted_stores(settings, app.conf.tabledir, ["tasks"], watermarks=lambda topic, partitions: marks)
    assert sorted(p.name for p in dropped) == ["tasks-1.db", "tasks-2.db"]
    assert sorted(p.name for p in app.conf.tabledir.glob("tasks-*.db")) == ["tasks-0.db"]


def _write_store(path, keys: int, offset: int) -> None:
    from rocksdict import Options, Rdict

    db = Rdict(str(path), options=Options(raw_mode=True))
    for i in range(keys):
        db[f"cluster/task-{i}".encode()] = os.urandom(200)  # incompressible: the middle of the file is data blocks
    db[b"__faust\x00offset__"] = str(offset).encode()
    db.flush()
    db.close()


def test_a_corrupt_store_is_found_after_an_unclean_stop_and_rebuilt(tmp_path):
    settings = Settings.load(environ={}, app_id="store-test")
    tabledir = tmp_path / "tables"
    tabledir.mkdir()
    for partition in (0, 1):
        _write_store(tabledir / f"tasks-{partition}.db", 5000, 9)
    sst = max((tabledir / "tasks-1.db").glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(sst.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # a block in the middle: the offset key still reads
    sst.write_bytes(bytes(data))
    marks = lambda topic, partitions: {0: (0, 10), 1: (0, 10)}  # noqa: E731 - both trusted by their offsets

    (tabledir / ".clean-stop").write_text("")  # after a clean stop the stores are not read through
    assert drop_untrusted_stores(settings, tabledir, ["tasks"], watermarks=marks) == []
    assert not (tabledir / ".clean-stop").exists()  # this run has not stopped cleanly yet
    dropped = drop_untrusted_stores(settings, tabledir, ["tasks"], watermarks=marks)  # an unclean stop: read through
    assert [p.name for p in dropped] == ["tasks-1.db"]
    assert sorted(p.name for p in tabledir.glob("tasks-*.db")) == ["tasks-0.db"]
