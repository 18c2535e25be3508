"""The demo Celery app: one task per kind of outcome the pipeline must recognise."""

import os
import time

from celery import Celery
from celery.exceptions import Reject

app = Celery("demo", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_send_sent_event=True,  # task-sent -> QUEUED
    worker_send_task_events=True,  # same as -E
    task_default_queue=os.environ.get("DEMO_QUEUE", "celery-monitor-demo"),
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Celery >= 5.5: a cold shutdown (SIGQUIT) first waits this long, then cancels running tasks
    worker_soft_shutdown_timeout=float(os.environ.get("DEMO_SOFT_SHUTDOWN_TIMEOUT", "0")),
    # The exchange the bridge reads (its setting, in the stack's environment like the broker URL);
    # a cluster that changes Celery's event_exchange sets BRIDGE_EVENT_EXCHANGE to the same name.
    event_exchange=os.environ.get("BRIDGE_EVENT_EXCHANGE", "celeryev"),
)


def make_client(broker_url: str, queue: str, event_exchange: str = "celeryev") -> Celery:
    """A producer-only app for one run: sends the tasks above by name, asks workers via control.

    A fresh app per run, because an app's connection and producer pools stay bound to the first
    broker it used (the tests run the workload on RabbitMQ and then on Redis in one process).
    """
    client = Celery("demo-client", broker=broker_url, set_as_current=False)
    client.conf.update(task_send_sent_event=True, task_default_queue=queue, task_ignore_result=True, event_exchange=event_exchange)
    return client


@app.task(name="demo.add")
def add(x, y):
    return x + y


@app.task(name="demo.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="demo.flaky", bind=True, max_retries=3)
def flaky(self, succeed_on_try):
    attempt = self.request.retries + 1
    if attempt < succeed_on_try:
        raise self.retry(exc=ConnectionError(f"transient failure on try {attempt}"), countdown=0.1)
    return f"ok on try {attempt}"


@app.task(name="demo.always_retry", bind=True, max_retries=2)
def always_retry(self):
    raise self.retry(exc=RuntimeError("still broken"), countdown=0.1)


@app.task(name="demo.poll", bind=True, max_retries=None)
def poll(self, until):
    """A polling task, as celery.chord_unlock on a backend without native chords: retries at once,
    without limit, until its attempt number reaches ``until``."""
    if self.request.retries < until:
        raise self.retry(countdown=0)
    return self.request.retries


@app.task(name="demo.needs_file", bind=True, max_retries=1)
def needs_file(self, path):
    """Fails until ``path`` exists, after one retry (CRITICAL); the task-control tests create the
    file, then retry the task from the monitor."""
    if not os.path.exists(path):
        raise self.retry(exc=FileNotFoundError(path), countdown=0.1)
    return path


@app.task(name="demo.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="demo.sleep_late", acks_late=True)
def sleep_late(seconds):
    """acks_late: a worker lost while running it leaves the message to be redelivered."""
    time.sleep(seconds)
    return seconds


@app.task(name="demo.reject", bind=True, acks_late=True)
def reject(self):
    raise Reject("bad payload, dropping", requeue=False)
