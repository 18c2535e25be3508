"""`make chaos`, short forms, under a steady real Celery workload on RabbitMQ:
* kill -9 the bridge three times and the streams worker once, stop ClickHouse, pause Kafka;
* kill -9 the Kafka broker twice mid-workload and restart it (Tansu on durable s3 storage).
Then every task's record in ClickHouse equals what an undisturbed run gives, and no event is lost."""

from __future__ import annotations

import pytest

from demo.chaos import BROKER_RESTART, SHORT, run_chaos, summary
from devstack.pipeline import Pipeline
from devstack.private import private_stack

# Kills at set moments and a catch-up deadline: make test runs this file alone (-m serial), after
# the parallel part; beside another file on 2 cores the windows were missed.
pytestmark = pytest.mark.serial


def _run(stack, settings, run_dir, plan) -> dict:
    pipeline = Pipeline(settings, run_dir / "logs")
    pipeline.settings = pipeline.settings.replace(cluster=f"chaos-{pipeline.run_id}")
    try:
        result = run_chaos(pipeline, stack, plan)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
    print(summary(result))
    return result


def _assert_nothing_lost(result: dict, faults: int, events: int) -> None:
    assert len(result["faults"]) == faults
    assert result["events_witnessed"] > events
    assert result["events_lost"] == 0, result["examples"]
    assert result["events_unknown_to_witness"] == 0
    assert result["tasks_differing_from_undisturbed"] == 0, result["examples"]
    assert result["tasks_in_unexpected_state"] == 0, result["examples"]


def test_nothing_lost_under_faults(stack):
    _assert_nothing_lost(_run(stack["stack"], stack["settings"], stack["run_dir"], SHORT), faults=8, events=1000)


@pytest.fixture(scope="module")
def durable_stack(tmp_path_factory):
    """A stack of its own whose Tansu keeps its log in an S3 bucket (a moto server of its own)."""
    run_dir = tmp_path_factory.mktemp("durable")
    with private_stack(run_dir, prefix="celery-monitor-durable", storage="s3") as stack:
        yield stack


def test_a_kafka_broker_restart_loses_nothing(durable_stack):
    result = _run(durable_stack, durable_stack.settings, durable_stack.run_dir, BROKER_RESTART)
    _assert_nothing_lost(result, faults=4, events=1000)
