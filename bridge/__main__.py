"""python -m bridge --broker URL --cluster NAME [--kafka-bootstrap HOST:PORT ...]

Also: ``python -m bridge queues`` (this product's bridge queues: depth, consumers) and
``python -m bridge forget --cluster NAME`` (delete a retired cluster's queue) — bridge/lifecycle.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading

from streams.config import Settings, add_arguments
from streams.listen import SettingError
from streams.logs import setup_logging

from .clusters import ClusterSpec, load_clusters
from .envelope import Enveloper
from .metrics import BridgeMetrics
from .producer import KafkaEventProducer
from .queues import QueueSampler
from .receiver import BrokerReceiver
from .redact import Redactor

log = logging.getLogger("bridge")
INSPECT_WAIT = 5.0  # a sampler in the middle of its inspect broadcasts finishes them


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__)
    parser.add_argument("--broker", dest="broker_url", default=None, help="Celery broker URL (env CELERY_BROKER_URL)")
    add_arguments(
        parser,
        [
            "cluster",
            "broker_ssl",
            "kafka_bootstrap",
            "kafka_security_protocol",
            "kafka_sasl_mechanism",
            "kafka_sasl_username",
            "kafka_sasl_password",
            "kafka_ssl_cafile",
            "topic_task_events",
            "topic_worker_events",
            "topic_dead_letters",
            "topic_bridge_status",
            "bridge_queue",
            "bridge_queue_max_length",
            "bridge_queue_ttl_ms",
            "bridge_prefetch",
            "bridge_batch_size",
            "bridge_batch_bytes",
            "bridge_batch_seconds",
            "bridge_min_flush_interval",
            "bridge_pack_max_bytes",
            "bridge_tick_seconds",
            "bridge_kafka_timeout",
            "bridge_metrics_addr",
            "bridge_queue_sample_seconds",
            "bridge_queues",
            "bridge_queue_discovery",
            "topic_queue_lengths",
            "bridge_redact_fields",
            "bridge_redact_mode",
            "bridge_redact_max_chars",
        ],
    )
    parser.add_argument("--config", default=None, help="cluster file (TOML): several clusters in one process (see bridge/clusters.py)")
    parser.add_argument("--bridge-id", default=None, help="id on every pack (default host:pid)")
    parser.add_argument("--log-level", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("queues", "forget"):
        from .lifecycle import main as lifecycle

        sys.exit(lifecycle(argv))
    args = parse_args(argv)
    setup_logging(args.log_level)
    settings = Settings.load(args)
    bridge_id = args.bridge_id or f"{socket.gethostname()}:{os.getpid()}"
    log.info("bridge starting: id=%s settings=%s", bridge_id, settings.as_dict())
    redactor = Redactor.from_settings(settings.bridge_redact_fields, settings.bridge_redact_mode, settings.bridge_redact_max_chars)
    if args.config:
        specs = load_clusters(args.config)
    else:
        specs = [ClusterSpec(settings.cluster, settings.broker_url, settings.bridge_queue, settings.broker_ssl)]
    metrics = BridgeMetrics()
    try:
        metrics.serve(settings.bridge_metrics_addr)
    except SettingError as exc:  # a setting to change, not a crash: one line, no traceback
        log.error("%s", exc)
        sys.exit(2)
    producer = KafkaEventProducer(settings)  # one producer (thread-safe) for every cluster
    receivers, samplers = [], []
    for spec in specs:
        cluster_settings = dataclasses.replace(settings, cluster=spec.name, broker_url=spec.broker_url, bridge_queue=spec.queue)
        if spec.queues is not None:
            cluster_settings = dataclasses.replace(cluster_settings, bridge_queues=",".join(spec.queues))
        enveloper = Enveloper(spec.name, bridge_id, redactor)
        receivers.append(
            BrokerReceiver(cluster_settings, enveloper, producer, metrics, spec.transport_options, spec.ssl)
        )
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


if __name__ == "__main__":
    main()
