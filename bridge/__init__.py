"""Celery broker (celeryev exchange) -> Kafka, raw bodies kept, one envelope per event."""
