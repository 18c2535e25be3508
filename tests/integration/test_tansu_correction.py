"""Tansu's ListOffsets(LATEST) is wrong; the Fetch high watermark (our correction) is right."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.tansu import fetch_highwaters


def test_fetch_high_watermark_counts_every_record(stack):
    bootstrap = stack["settings"].kafka_bootstrap
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("tansu-probe", num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    for batch in range(3):  # three record batches of 10
        for i in range(10):
            producer.send("tansu-probe", value=b"x", partition=0)
        producer.flush()
    producer.close()
    tp = TopicPartition("tansu-probe", 0)
    assert fetch_highwaters([bootstrap], [tp]) == {tp: 30}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    listed = consumer.end_offsets([tp])[tp]
    consumer.close()
    # Documents the broker bug the correction exists for (fails once Tansu fixes it: then
    # KAFKA_FLAVOR=tansu can stop installing the correction).
    assert listed < 30


def test_the_probe_logs_no_error(stack, caplog):
    """kafka-python 3.0's consumer, closed right after a poll, logged ERRORs with a traceback on
    most probes ("Metadata refresh: failed Cancelled", "'NoneType' object has no attribute
    'recv'") — on every clean streams worker start. The probe is librdkafka's now."""
    import logging

    settings = stack["settings"]
    tps = [TopicPartition(settings.topic_task_events, p) for p in range(settings.topic_partitions)]
    with caplog.at_level(logging.DEBUG):
        for _ in range(10):
            assert set(fetch_highwaters([settings.kafka_bootstrap], tps)) == set(tps)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def test_read_backs_of_many_partitions_and_the_sinks_stall_check(stack):
    """What a stalled broker leaves to the worker and the sink: fetch_ranges reads several
    partitions' ranges with one consumer, exactly; the sink's stall check finds each partition's
    log end (a partition the probe cannot answer for does not hide the others)."""
    from streams.sink.consumer import ClickHouseSink
    from streams.stalls import fetch_ranges

    settings = stack["settings"]
    bootstrap = settings.kafka_bootstrap
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("read-back-probe", num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    for partition, count in enumerate((5, 12, 0)):
        for i in range(count):
            producer.send("read-back-probe", value=f"{partition}-{i}".encode(), partition=partition)
    producer.flush()
    producer.close()
    found = fetch_ranges(settings, {("read-back-probe", 0): range(1, 4), ("read-back-probe", 1): range(3, 12),
                                    ("read-back-probe", 2): range(0, 0)})  # fmt: skip
    assert [(r.offset, r.value) for r in found["read-back-probe", 0]] == [(i, f"0-{i}".encode()) for i in range(1, 4)]
    assert [(r.offset, r.value) for r in found["read-back-probe", 1]] == [(i, f"1-{i}".encode()) for i in range(3, 12)]
    assert found["read-back-probe", 2] == []
    sink = ClickHouseSink(settings)
    sink._connect()
    try:
        ends = sink._log_ends([("read-back-probe", 0), ("read-back-probe", 1), ("read-back-probe", 2)])
    finally:
        sink.consumer.close()
    assert ends == {("read-back-probe", 0): 5, ("read-back-probe", 1): 12, ("read-back-probe", 2): 0}
