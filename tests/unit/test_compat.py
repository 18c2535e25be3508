"""Every private name of Faust, aiokafka and Faust's RocksDB store the project uses still exists in
the installed versions (streams/compat.py): an upgrade that removes one fails here, not in a worker."""

import inspect
from importlib.metadata import version

import pytest

from streams import compat


@pytest.mark.parametrize("description, get", compat.private_names(), ids=[d for d, _ in compat.private_names()])
def test_private_name_exists(description, get):
    assert get() is not None, description


def test_the_commit_floor_wraps_the_consumer_method_it_names():
    from faust.transport.consumer import Consumer

    params = list(inspect.signature(Consumer._new_offset).parameters)
    assert params == ["self", "tp"], params  # hold_commits' wrapper takes (self, tp)


def test_no_other_module_uses_a_private_faust_or_aiokafka_name():
    """Private names of dependencies appear in streams/compat.py only."""
    import pathlib
    import re

    root = pathlib.Path(compat.__file__).parent
    pattern = re.compile(r"\._(committed_offset|acked|acked_index|new_offset|current_event|highwaters|create_worker_consumer|fetch_max_wait_ms)\b")
    offenders = [str(p.relative_to(root.parent)) for p in root.rglob("*.py") if p.name != "compat.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_the_tested_versions_are_installed():
    assert version("faust-streaming").startswith("0.15.")
    assert version("aiokafka").startswith("0.14.")


def test_rocksdb_layout_matches_what_compat_reads(tmp_path):
    """A store written by Faust's own RocksDB Store is read back by compat (offset key and path)."""
    import faust

    app = faust.App("compat-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("tasks", default=None, partitions=4)
    from faust.types import TP

    table.data.set_persisted_offset(TP("compat-test-tasks-changelog", 2), 41)
    paths = compat.rocksdb_partition_paths(app.conf.tabledir, "tasks")
    assert list(paths) == [2]
    assert compat.rocksdb_persisted_offset(paths[2]) == 41
