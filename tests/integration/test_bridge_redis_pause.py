"""A paused Redis bridge does not make live workers look lost.

On Redis what is published while the bridge does not read waits in its socket. The bridge once
moved its watermark (read_until) at every tick and flush, before reading that backlog: after a
pause of more than 2 x freq the streams worker judged every worker silent (a false worker-lost).
Real Redis, the bridge and a streams worker on topics of their own; heartbeats every 0.5 s
(freq 3 s) throughout, the bridge stopped (SIGSTOP) for 12 s."""

from __future__ import annotations

import signal
import time

import orjson
import redis as redis_client
from celery.events.event import get_exchange
from kombu import Connection

from demo.backlog import read_topic, wait_for_record
from devstack.pipeline import Pipeline
from streams.topics import ensure_topics
from tests.integration.conftest import KOMBU_DEADLINES, own_topics

URL = "redis://127.0.0.1:6379/13"
FREQ = 3.0  # s; heartbeats every 0.5 s: a loaded machine delaying a few is no silence of 2 x FREQ


def test_a_paused_redis_bridge_raises_no_worker_lost(stack):
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    settings = pipeline.settings.replace(broker_url=URL, app_id=f"{base.app_id}-pause-{pipeline.run_id}", cluster=f"pause-{pipeline.run_id}",
        sink="off", streams_metrics_addr="off", bridge_metrics_addr="off", bridge_queue_sample_seconds=0.0,
        data_dir=str(stack["run_dir"] / f"faust-pause-{pipeline.run_id}"),
    )  # fmt: skip
    settings = own_topics(settings, pipeline.run_id)
    pipeline.settings = settings
    ensure_topics(settings)
    host = f"paused-{pipeline.run_id}@h"
    mine = lambda r: r.get("cluster") == settings.cluster and r.get("hostname") == host  # noqa: E731
    try:
        bridge = pipeline.start_bridge()
        pipeline.start_streams()
        with Connection(URL) as conn, conn.Producer(exchange=get_exchange(conn, settings.bridge_event_exchange)) as producer:
            clock = 0

            def beat() -> None:
                nonlocal clock
                clock += 1
                body = {"type": "worker-heartbeat", "hostname": host, "timestamp": time.time(), "freq": FREQ, "clock": clock,
                        "pid": 1, "active": 0, "processed": 0}  # fmt: skip
                producer.publish(orjson.dumps(body), routing_key="worker.heartbeat", content_type="application/json", content_encoding="utf-8")

            def beat_for(seconds: float) -> None:
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    beat()
                    time.sleep(0.5)

            beat()
            wait_for_record(settings, settings.topic_worker_states, lambda r: mine(r) and r["state"] == "HEARTBEAT", 90, pipeline.check_alive)
            beat_for(3)
            bridge.signal(signal.SIGSTOP)
            try:
                beat_for(4 * FREQ)  # the worker lives on, the bridge reads nothing
            finally:
                bridge.signal(signal.SIGCONT)
            beat_for(8)
        states = [r for r in read_topic(settings, settings.topic_worker_states) if mine(r)]
        assert states and all(r["state"] != "OFFLINE" for r in states), [r for r in states if r["state"] == "OFFLINE"]
        alerts = [a for a in read_topic(settings, settings.topic_alerts) if a["cluster"] == settings.cluster]
        assert not [a for a in alerts if a["alert"] == "worker-lost"], alerts
    finally:
        pipeline.stop()
        redis_client.Redis.from_url(URL).delete(KOMBU_DEADLINES)
