"""The demo workload and the exact final record each task must end with."""

from __future__ import annotations

import time

from celery import Celery

N_ADD = 20
N_FAIL = 3


def submit(client: Celery, worker_hostname: str, timeout: float = 30.0) -> dict[str, dict]:
    """Publish the mixed workload; returns uuid -> expected fields of its final record."""
    expected: dict[str, dict] = {}

    def send(name: str, expect: dict, args=(), **options) -> str:
        task_id = client.send_task(name, args=args, **options).id
        expected[task_id] = {"name": name, **expect}
        return task_id

    for i in range(N_ADD):
        send("demo.add", {"state": "SUCCEEDED", "retries": 0, "result": repr(2 * i)}, (i, i))
    for i in range(N_FAIL):
        send("demo.fail", {"state": "FAILED", "retries": 0, "exception_type": "ValueError"}, (f"boom {i}",))
    for _ in range(2):
        send("demo.flaky", {"state": "RECOVERED", "retries": 2, "result": "'ok on try 3'"}, (3,))
    for _ in range(2):
        send("demo.always_retry", {"state": "CRITICAL", "retries": 2, "exception_type": "RuntimeError"})
    # Expired: held by the worker until its ETA, which is after its expiry (an already-expired
    # message would be dropped by RabbitMQ's per-message TTL before any worker saw it).
    send("demo.add", {"state": "REVOKED", "revocation_reason": "expired"}, (1, 1), countdown=2, expires=1)
    send("demo.reject", {"state": "REJECTED", "rejection": "ignored", "exception_type": "Reject"})

    # Terminate needs the task running, not merely reserved (that would be a plain revoke).
    long_task = send("demo.sleep", {"state": "REVOKED", "revocation_reason": "terminated", "signum": 15}, (60,))
    inspect = client.control.inspect(destination=[worker_hostname], timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = inspect.active() or {}
        if any(t["id"] == long_task for t in active.get(worker_hostname, [])):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"task {long_task} never became active on {worker_hostname}")
    client.control.revoke(long_task, terminate=True, signal="SIGTERM")
    return expected
