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
