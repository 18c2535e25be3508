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
