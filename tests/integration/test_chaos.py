"""`make chaos`, short form: kill -9 the bridge three times and the streams worker once, stop
ClickHouse, pause Kafka, all under a steady real Celery workload on RabbitMQ; then every task's
record in ClickHouse equals what an undisturbed run gives, and no event is lost."""

from __future__ import annotations


from demo.chaos import SHORT, run_chaos, summary
from devstack.pipeline import Pipeline


def test_nothing_lost_under_faults(stack):
    pipeline = Pipeline(stack["settings"], stack["run_dir"] / "logs")
    pipeline.settings = pipeline.settings.replace(cluster=f"chaos-{pipeline.run_id}")
    try:
        result = run_chaos(pipeline, stack["stack"], SHORT)
    finally:
        pipeline.stop()
        pipeline.cleanup_broker()
    print(summary(result))
    assert len(result["faults"]) == 8
    assert result["events_witnessed"] > 1000
    assert result["events_lost"] == 0, result["examples"]
    assert result["events_unknown_to_witness"] == 0
    assert result["tasks_differing_from_undisturbed"] == 0, result["examples"]
    assert result["tasks_in_unexpected_state"] == 0, result["examples"]
