"""Redis pub/sub overflow: the bridge cannot prevent the loss, but detects and reports it.

The bridge is paused (SIGSTOP) while 1.5 x Redis' pub/sub output-buffer hard limit of events is
published; Redis drops the subscriber. After SIGCONT the bridge reconnects and publishes a
`disconnect` gap record, and a worker's next heartbeat yields a `heartbeat` gap record."""

from __future__ import annotations

import signal
import time
import urllib.request

import orjson
import pytest
import redis as redis_client
from celery.events.event import get_exchange
from kafka import KafkaConsumer
from kombu import Connection

from devstack.pipeline import Pipeline
from devstack import services
from tests.integration.conftest import KOMBU_DEADLINES

URL = "redis://127.0.0.1:6379/12"


def heartbeat(host: str, ts: float, pad: int = 0) -> bytes:
    event = {"type": "worker-heartbeat", "hostname": host, "timestamp": ts, "freq": 2.0, "clock": 1, "pid": 1, "active": 0, "processed": 0}
    if pad:
        event["sw_sys"] = "x" * pad
    return orjson.dumps(event)


def test_redis_overflow_is_detected_and_reported(stack):
    limits = redis_client.Redis.from_url(URL).config_get("client-output-buffer-limit")["client-output-buffer-limit"].split()
    hard = int(limits[limits.index("pubsub") + 1])
    if hard == 0:
        pytest.skip("this Redis never drops pub/sub subscribers (no hard limit): nothing to detect")
    base = stack["settings"]
    pipeline = Pipeline(base, stack["run_dir"] / "logs")
    metrics_addr = f"127.0.0.1:{services.free_port()}"
    settings = pipeline.settings.replace(broker_url=URL, cluster=f"{base.cluster}-gap-{pipeline.run_id}", bridge_metrics_addr=metrics_addr
    )
    pipeline.settings = settings
    host, t0 = f"gap-{pipeline.run_id}@h", time.time()
    try:
        bridge = pipeline.start_bridge()
        with Connection(URL) as conn:
            exchange = get_exchange(conn, settings.bridge_event_exchange)
            with conn.Producer(exchange=exchange) as producer:

                def publish(body: bytes) -> None:
                    producer.publish(body, routing_key="worker.heartbeat", content_type="application/json", content_encoding="utf-8")

                publish(heartbeat(host, t0))
                time.sleep(1.0)
                bridge.signal(signal.SIGSTOP)
                pad = 10_000
                for _ in range(int(hard * 1.5 / pad) + 1):  # Redis drops the paused subscriber
                    publish(heartbeat(f"flood-{pipeline.run_id}@h", t0, pad))
                bridge.signal(signal.SIGCONT)
                pipeline.wait_for_log(bridge, "events lost while disconnected", timeout=60)
                gaps = {}
                consumer = KafkaConsumer(
                    settings.topic_bridge_status, bootstrap_servers=settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
                )
                deadline = time.monotonic() + 30
                while len(gaps) < 2 and time.monotonic() < deadline:
                    # The resubscription may not be active yet when the bridge logs (pub/sub drops what
                    # nobody hears): the same heartbeat again until it is heard; its copies are no gap.
                    publish(heartbeat(host, t0 + 10))
                    for records in consumer.poll(timeout_ms=500).values():
                        for message in records:
                            record = orjson.loads(message.value)
                            if record["cluster"] == settings.cluster:
                                gaps[record["gap"]] = record
                consumer.close()
        metrics = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    finally:
        pipeline.stop()
        redis_client.Redis.from_url(URL).delete(KOMBU_DEADLINES)
    assert set(gaps) == {"disconnect", "heartbeat"}, gaps
    assert gaps["heartbeat"]["hostname"] == host and gaps["heartbeat"]["missing_heartbeats"] == 4
    assert gaps["disconnect"]["seconds"] > 0 and gaps["disconnect"]["reason"]
    for gap in ("disconnect", "heartbeat"):
        assert f'bridge_gaps_total{{cluster="{settings.cluster}",gap="{gap}"}} 1.0' in metrics, metrics
