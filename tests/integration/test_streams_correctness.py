"""The streams app under restarts, scale-out and duplicate delivery: records stay exact.

Real Tansu, streams workers as separate processes (`python -m streams worker`). The backlog is
recorded Celery events (the shared load fixture, 10k task events, ~2,600 tasks); "exact" is what
the engine gives for the same set of events, i.e. what an undisturbed run publishes.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from bench.engine import load_events
from demo.backlog import TaskStateReader, expected_task_records, produce_events
from devstack.pipeline import Pipeline
from streams.topics import ensure_topics

EVENTS = int(os.environ.get("STREAMS_TEST_EVENTS", "10000"))


@pytest.fixture(params=["memory://", "rocksdb://"])
def backlog(stack, request):
    """Fresh app id and cluster; the backlog's events and the records they must give."""
    run = uuid.uuid4().hex[:6]
    settings = stack["settings"].replace(app_id=f"streams-test-{run}", cluster=f"streams-{run}", sink="off", store=request.param,
        data_dir=str(stack["run_dir"] / f"faust-{run}"), streams_metrics_addr="off",
    )  # fmt: skip
    ensure_topics(settings)
    events = [e for e in load_events(EVENTS) if e["type"].startswith("task-")][:EVENTS]
    pipeline = Pipeline(settings, stack["run_dir"] / "logs")
    reader = TaskStateReader(settings)
    yield settings, events, expected_task_records(settings, events), pipeline, reader
    reader.close()
    pipeline.stop()


def _wait_for_progress(reader: TaskStateReader, at_least: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while len(reader.latest) < at_least:  # the reader keeps this test's cluster only
        assert time.monotonic() < deadline, f"only {len(reader.latest)} tasks published"
        reader.poll(0.2)


def _assert_exact(reader, expected, settings, pipeline, timeout=90.0):
    diff = reader.wait_until_equal(expected, timeout, alive=pipeline.check_alive)
    missing = sum(1 for got, _ in diff.values() if got is None)
    counts = sorted({(got["events_count"], want["events_count"]) for got, want in diff.values() if got})[:5]
    sample = dict(list(diff.items())[:1])
    assert not diff, (
        f"{len(diff)} of {len(expected)} task records differ: {missing} never published, "
        f"(published, expected) events_count {counts}; e.g. {sample}"
    )


def test_kill_dash_9_and_restart_gives_the_records_of_an_undisturbed_run(backlog):
    settings, events, expected, pipeline, reader = backlog
    produce_events(settings, events)
    first = pipeline.start_streams("streams-a")
    _wait_for_progress(reader, len(expected) // 3)
    first.signal(signal.SIGKILL)
    first.popen.wait(10)
    second = pipeline.start_streams("streams-a")  # same app id: recovers the changelog, resumes
    _assert_exact(reader, expected, settings, pipeline)
    assert second.alive()


def test_two_workers_give_the_records_of_one_and_survive_losing_one(backlog):
    settings, events, expected, pipeline, reader = backlog
    a = pipeline.start_streams("streams-a", STREAMS_DATA_DIR=f"{settings.data_dir}-a")  # a host each
    b = pipeline.start_streams("streams-b", STREAMS_DATA_DIR=f"{settings.data_dir}-b")
    time.sleep(settings.session_timeout * 2)  # both in the group before the load arrives
    produce_events(settings, events)
    _wait_for_progress(reader, len(expected) // 3)
    a.signal(signal.SIGKILL)  # b takes over a's partitions after the session timeout
    a.popen.wait(10)
    _assert_exact(reader, expected, settings, pipeline)
    assert b.alive()


def test_every_event_delivered_twice_gives_identical_records(backlog):
    settings, events, expected, pipeline, reader = backlog
    produce_events(settings, events, copies=2)
    pipeline.start_streams("streams-a")
    _assert_exact(reader, expected, settings, pipeline)
    published = reader.latest
    assert max(r["events_count"] for r in published.values()) == max(r["events_count"] for r in expected.values())
