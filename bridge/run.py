"""The bridge process: one consumer thread per Celery cluster, one Kafka producer for all.

``celery-monitor bridge`` (or ``python -m bridge``) calls :func:`run`; see streams/cli.py for the
command line and docs/configuration.md for the settings.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from streams.config import Settings

from .clusters import ClusterSpec, load_clusters
from .envelope import Enveloper
from .metrics import BridgeMetrics
from .producer import KafkaEventProducer
from .queues import QueueSampler
from .receiver import BrokerReceiver
from .redact import Redactor

log = logging.getLogger("bridge")
INSPECT_WAIT = 5.0  # a sampler in the middle of its inspect broadcasts finishes them


def run(settings: Settings, config_file: str | None = None, bridge_id: str | None = None) -> int:
    """Bridge every configured cluster until SIGTERM/SIGINT; returns the exit status.

    Raises streams.listen.SettingError when BRIDGE_METRICS_ADDR cannot be bound."""
    bridge_id = bridge_id or f"{socket.gethostname()}:{os.getpid()}"
    log.info("bridge starting: id=%s settings not at their defaults: %s", bridge_id, settings.as_dict(changed_only=True))
    redactor = Redactor.from_settings(settings.bridge_redact_fields, settings.bridge_redact_mode, settings.bridge_redact_max_chars)
    if config_file:
        specs = load_clusters(config_file)
    else:
        specs = [ClusterSpec(settings.cluster, settings.broker_url, settings.bridge_queue, settings.broker_ssl)]
    metrics = BridgeMetrics()
    metrics.serve(settings.bridge_metrics_addr)  # a taken port: SettingError, one line and exit 2 (streams.cli)
    producer = KafkaEventProducer(settings)  # one producer (thread-safe) for every cluster
    receivers, samplers = [], []
    for spec in specs:
        cluster_settings = settings.replace(cluster=spec.name, broker_url=spec.broker_url, bridge_queue=spec.queue)
        if spec.queues is not None:
            cluster_settings = cluster_settings.replace(bridge_queues=",".join(spec.queues))
        if spec.event_exchange is not None:
            cluster_settings = cluster_settings.replace(bridge_event_exchange=spec.event_exchange)
        enveloper = Enveloper(spec.name, bridge_id, redactor)
        receivers.append(BrokerReceiver(cluster_settings, enveloper, producer, metrics, spec.transport_options, spec.ssl))
        if settings.bridge_queue_sample_seconds > 0:
            samplers.append(QueueSampler(cluster_settings, bridge_id, producer.send_all, metrics, spec.transport_options, spec.ssl))

    def stop(signum, _frame):
        log.info("bridge stopping on signal %d: flushing the current batches", signum)
        for worker in (*receivers, *samplers):
            worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=r.run, name=f"cluster-{r.settings.cluster}", daemon=True) for r in receivers]
    sampling = [threading.Thread(target=s.run, name=f"queues-{s.settings.cluster}", daemon=True) for s in samplers]
    try:
        for thread in (*threads, *sampling):
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)  # short joins: the main thread must stay free for signals
    finally:
        for sampler in samplers:
            sampler.stop()
        for thread in sampling:
            thread.join(timeout=INSPECT_WAIT)
        producer.close()
        log.info("bridge stopped: %s", {r.settings.cluster: r.counts for r in receivers})
    return 0
