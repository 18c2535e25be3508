"""Kafka -> ClickHouse: pure row mapping (rows.py), the writer (clickhouse.py), the consumer loop (consumer.py)."""
