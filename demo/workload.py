"""The demo workload and the exact final record each task must end with."""

from __future__ import annotations

import time

from . import tasks

N_ADD = 20
N_FAIL = 3


def submit(worker_hostname: str, timeout: float = 30.0) -> dict[str, dict]:
    """Publish the mixed workload; returns uuid -> expected fields of its final record."""
    expected: dict[str, dict] = {}

    def expect(async_result, **fields) -> None:
        expected[async_result.id] = fields

    for i in range(N_ADD):
        expect(tasks.add.delay(i, i), name="demo.add", state="SUCCEEDED", retries=0, result=repr(2 * i))
    for i in range(N_FAIL):
        expect(tasks.fail.delay(f"boom {i}"), name="demo.fail", state="FAILED", retries=0, exception_type="ValueError")
    for _ in range(2):
        expect(tasks.flaky.delay(3), name="demo.flaky", state="RECOVERED", retries=2, result="'ok on try 3'")
    for _ in range(2):
        expect(tasks.always_retry.delay(), name="demo.always_retry", state="CRITICAL", retries=2, exception_type="RuntimeError")
    # Expired: held by the worker until its ETA, which is after its expiry (an already-expired
    # message would be dropped by RabbitMQ's per-message TTL before any worker saw it).
    expect(tasks.add.apply_async((1, 1), countdown=2, expires=1), name="demo.add", state="REVOKED", revocation_reason="expired")
    expect(tasks.reject.delay(), name="demo.reject", state="REJECTED", rejection="ignored", exception_type="Reject")

    # Terminate needs the task running, not merely reserved (that would be a plain revoke).
    long_task = tasks.sleep.delay(60)
    inspect = tasks.app.control.inspect(destination=[worker_hostname], timeout=1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = inspect.active() or {}
        if any(t["id"] == long_task.id for t in active.get(worker_hostname, [])):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"task {long_task.id} never became active on {worker_hostname}")
    tasks.app.control.revoke(long_task.id, terminate=True, signal="SIGTERM")
    expect(long_task, name="demo.sleep", state="REVOKED", revocation_reason="terminated", signum=15)
    return expected
