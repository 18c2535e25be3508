"""`celery-monitor notify` against a real Kafka-protocol broker (the stack's Tansu), a real local
webhook server (Apprise's json:// posts to it) and a real local SMTP server (aiosmtpd): the expected messages arrive once, a failing
channel is given up without holding the others, and after a kill -9 the delivered alerts are not
delivered again while the new ones are."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import urllib.request
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from devstack.pipeline import Proc, settings_env
from devstack.services import free_port


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.received.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Mailbox:
    def __init__(self):
        self.mails: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.mails.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode(errors="replace")))
        return "250 OK"


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (aiosmtpd): the e-mails Apprise's mailto:// sends."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, box
    controller.stop()


@pytest.fixture
def hook():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def produce(settings, alerts: list[dict]) -> None:
    from confluent_kafka import Producer

    from streams.connections import librdkafka_options

    producer = Producer(librdkafka_options(settings))
    for alert in alerts:
        producer.produce(settings.topic_alerts, key=alert["key"].encode(), value=orjson.dumps(alert))
    assert producer.flush(30) == 0


def alert(kind: str, key: str, **fields) -> dict:
    return {"v": 1, "alert": kind, "cluster": "prod", "key": key, "at": time.time(), **fields}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def test_alerts_reach_the_webhook_once_across_a_kill_9(stack, hook, smtp, tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    run = uuidlib.uuid4().hex[:8]
    settings = stack["settings"].replace(topic_alerts=f"celery.alerts.notify-{run}", notify_group=f"notify-{run}", notify_retries=2,
                                         notify_ui_url="https://monitor.example")  # fmt: skip
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(settings.topic_alerts, num_partitions=2, replication_factor=1)])
    admin.close()
    dead = free_port()  # nothing listens there: a channel that always fails
    rules = tmp_path / "rules.toml"
    rules.write_text(f"""
[[rule]]
name = "billing"
alerts = ["task-critical", "failure-burst"]
tasks = ["billing.*"]
exclude_tasks = ["billing.noisy"]
urls = ["json://127.0.0.1:{hook}/billing"]

[[rule]]
name = "digest"
alerts = ["task-critical"]
tasks = ["billing.*"]
group_seconds = 2
urls = ["json://127.0.0.1:{hook}/digest"]

[[rule]]
name = "workers"
alerts = ["worker-lost"]
urls = ["json://127.0.0.1:{dead}/down", "json://127.0.0.1:{hook}/workers",
        "mailto://127.0.0.1:{smtp[0]}?from=monitor@example.org&to=ops@example.org&mode=insecure"]
""")
    hostile = '<script>alert(1)</script>"\u202e'
    first = [alert("task-critical", f"u{i}", name="billing.charge", retries=3, exception_type="KeyError", exception=f"KeyError('user {i}')")
             for i in range(4)]  # fmt: skip
    first += [alert("task-critical", "u0", name="billing.charge", retries=3),  # the same key again: de-duplicated
              alert("task-critical", "n1", name="billing.noisy"), alert("task-critical", "m1", name="mail.send"),
              alert("failure-burst", "prod/billing.refund", name="billing.refund", failures=7, window_seconds=60),
              alert("task-critical", "h1", name="billing." + hostile, exception=hostile),
              alert("worker-lost", "prod/w1@host", hostname="w1@host")]  # fmt: skip
    produce(settings, first)
    metrics_port = free_port()
    env = {**settings_env(settings), "NOTIFY_RULES": str(rules), "NOTIFY_METRICS_ADDR": f"127.0.0.1:{metrics_port}"}
    log_dir = stack["run_dir"] / "logs"
    notify = Proc("notify", [sys.executable, "-m", "streams", "notify"], env, log_dir / f"notify-{run}.log").start()
    try:
        wait_until(lambda: len(Hook.received) >= 8, 60, f"8 messages (got {len(Hook.received)}): {notify.tail()}")
        time.sleep(3)  # anything more would have come by now
        (digest,) = [m for m in Hook.received if m["path"] == "/digest"]  # 6 alerts of 2 s in one message
        assert digest["title"].startswith("6 alerts (digest): ") and digest["message"].count("https://monitor.example/task?") == 6
        Hook.received.remove(digest)
        titles = sorted(m["title"] for m in Hook.received)
        assert titles == sorted([f"[prod] task-critical: billing.charge"] * 4 + ["[prod] failure-burst: billing.refund",
                                f"[prod] task-critical: billing.{hostile}", "[prod] worker-lost: w1@host"])  # fmt: skip
        assert {m["path"] for m in Hook.received} == {"/billing", "/workers"}
        bodies = "\n".join(m["message"] for m in Hook.received)
        assert "https://monitor.example/task?cluster=prod&uuid=u3" in bodies and "https://monitor.example/failures?cluster=prod&name=billing.refund" in bodies
        assert f"exception: {hostile}" in bodies  # as text: a JSON string, not markup
        wait_until(lambda: "given up after 2 attempts" in notify.log_text(), 30, "the failing channel's give-up")
        assert "sent 9" in notify.log_text() and "suppressed 2" in notify.log_text()  # 7 webhooks + the digest + 1 e-mail
        (mail,) = smtp[1].mails
        assert mail[:2] == ("monitor@example.org", ["ops@example.org"])
        assert "Subject: [prod] worker-lost: w1@host" in mail[2] and 'Content-Type: text/plain; charset="utf-8"' in mail[2]
        assert "https://monitor.example/workers?cluster=3Dprod" in mail[2].replace("=\n", "")  # quoted-printable
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        counted = {(labels.get("rule"), labels.get("outcome")): float(value) for labels, value in (
            (dict(re.findall(r'(\w+)="([^"]*)"', found)), value)
            for found, value in re.findall(r"^celery_monitor_notify_messages_total\{([^}]*)\} (\S+)$", metrics, re.M))}  # fmt: skip
        assert counted == {("billing", "sent"): 6.0, ("billing", "suppressed"): 1.0, ("digest", "sent"): 1.0,
                           ("digest", "suppressed"): 1.0, ("workers", "sent"): 2.0, ("workers", "failed"): 1.0}  # fmt: skip
        time.sleep(2)  # the batch's commit follows its deliveries
        notify.signal(signal.SIGKILL)
        notify.popen.wait(10)
        produce(settings, [alert("task-critical", "u9", name="billing.charge"), alert("task-critical", "u10", name="billing.charge")])
        notify = Proc("notify", [sys.executable, "-m", "streams", "notify"], env, log_dir / f"notify-{run}-2.log").start()
        wait_until(lambda: len(Hook.received) >= 10, 60, f"3 more messages: {notify.tail()}")
        time.sleep(3)
        assert len(Hook.received) == 10  # the first batch was committed: not delivered again
        again = [m for m in Hook.received[7:] if m["path"] == "/billing"]
        assert sorted(m["message"].split("key: ")[1].split("\n")[0] for m in again) == ["u10", "u9"]
        (digest,) = [m for m in Hook.received[7:] if m["path"] == "/digest"]
        assert digest["title"].startswith("2 alerts (digest): ")
    finally:
        notify.stop()
