"""Celery broker (celeryev exchange) -> Kafka, raw bodies kept, one pack per partition per flush."""
