"""A demo Celery app, its mixed workload, and the orchestration behind `make demo` and the e2e test."""
