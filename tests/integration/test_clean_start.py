"""A clean first run: a plain `streams worker` and `bridge` start and stop with no ERROR and no
traceback in their logs (an alarming line on a first run costs a new user trust and time)."""

from __future__ import annotations

import re
import time

import pytest

from devstack.pipeline import Pipeline
from devstack import services

ALARMING = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)")


def alarming_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ALARMING.search(line)]


@pytest.fixture
def pipeline(stack, tmp_path):
    base = stack["settings"]
    pipeline = Pipeline(base, tmp_path / "logs")
    pipeline.settings = pipeline.settings.replace(cluster=f"{base.cluster}-clean-{pipeline.run_id}", bridge_queue_sample_seconds=1.0,
        streams_metrics_addr=f"127.0.0.1:{services.free_port()}", bridge_metrics_addr=f"127.0.0.1:{services.free_port()}",
    )  # fmt: skip
    yield pipeline
    pipeline.stop()
    pipeline.cleanup_broker()


def test_streams_worker_starts_and_stops_cleanly(pipeline):
    streams = pipeline.start_streams()
    pipeline.wait_for_log(streams, "[^Worker]: Ready", timeout=90)
    time.sleep(3)  # timers, the sink's first polls, a metrics scrape's worth of time
    assert streams.stop() == 0, streams.tail()
    log = streams.log_text()
    assert "Closing event loop" in log
    assert not alarming_lines(log), "\n".join(alarming_lines(log))


def test_bridge_starts_and_stops_cleanly(pipeline):
    bridge = pipeline.start_bridge()
    time.sleep(3)  # a few queue-length samples (with their inspect broadcasts)
    assert bridge.stop() == 0, bridge.tail()
    log = bridge.log_text()
    assert "bridge stopped" in log
    assert not alarming_lines(log), "\n".join(alarming_lines(log))
