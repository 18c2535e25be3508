"""celery-monitor notify's pure core: rules file, matching, messages, de-duplication and rate
limit (tests/integration/test_notify.py delivers through a real local webhook server)."""

from __future__ import annotations

import re

import pytest

from streams.notify import Limiter, Rule, RulesError, link, load_rules, message

RULES = """
[[rule]]
name = "critical"
alerts = ["task-critical", "failure-burst"]
clusters = ["prod*"]
tasks = ["billing.*"]
exclude_tasks = ["billing.noisy"]
urls = ["json://127.0.0.1:9/hook"]
dedupe_seconds = 600
rate_limit_per_minute = 2

[[rule]]
urls = "mailto://user:pass@example.org"
alerts = ["worker-lost"]
"""


def test_rules_file():
    critical, workers = load_rules(RULES)
    assert critical == Rule("critical", ("json://127.0.0.1:9/hook",), ("task-critical", "failure-burst"), ("prod*",), ("billing.*",),
                            ("billing.noisy",), (), 600, 2)  # fmt: skip
    assert workers.name == "rule-2" and workers.urls == ("mailto://user:pass@example.org",) and workers.tasks == ("*",)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "no [[rule]]"),
        ("x = 1\n[[rule]]\nurls=['a://']", "unknown top-level keys"),
        ("[[rule]]\nname='a'", "urls (Apprise URLs) are required"),
        ("[[rule]]\nurls=[]\n", "non-empty strings"),
        ("[[rule]]\nurls=['a://']\nalerts=['task-failed']", "alerts ['task-failed'] unknown"),
        ("[[rule]]\nurls=['a://']\ncluster='x'", "unknown keys ['cluster']"),
        ("[[rule]]\nurls=['a://']\nrate_limit_per_minute=-1", "must be a number >= 0"),
        ("[[rule]\n", "not TOML"),
    ],
)
def test_bad_rules_say_why(text, why):
    with pytest.raises(RulesError, match=re.escape(why)):
        load_rules(text)


def test_matching():
    critical, workers = load_rules(RULES)
    base = {"alert": "task-critical", "cluster": "prod-eu", "key": "u1", "name": "billing.charge"}
    assert critical.matches(base)
    assert not critical.matches({**base, "cluster": "staging"})
    assert not critical.matches({**base, "name": "billing.noisy"})
    assert not critical.matches({**base, "name": "mail.send"})
    assert not critical.matches({**base, "alert": "worker-lost", "name": None})
    assert workers.matches({"alert": "worker-lost", "cluster": "x", "key": "x/h", "hostname": "h"})
    assert not critical.matches({"alert": "worker-lost", "cluster": "prod", "key": "k"})  # no name: only tasks = ['*'] matches
    orphaned = Rule("o", ("a://",), ("task-orphaned",), states=("STARTED",))
    assert orphaned.matches({"alert": "task-orphaned", "cluster": "c", "key": "u", "state": "STARTED"})
    assert not orphaned.matches({"alert": "task-orphaned", "cluster": "c", "key": "u", "state": "RECEIVED"})


def test_runtime_threshold():
    (slow,) = load_rules("[[rule]]\nurls=['a://']\nalerts=['task-slow', 'task-critical']\nmin_runtime=30\n")
    base = {"alert": "task-slow", "cluster": "c", "key": "u", "name": "t.x", "state": "SUCCEEDED"}
    assert slow.min_runtime == 30 and slow.matches({**base, "runtime": 30.0}) and slow.matches({**base, "runtime": 95})
    assert not slow.matches({**base, "runtime": 29.9}) and not slow.matches(base)  # below it, or no runtime: no match
    assert not slow.matches({**base, "runtime": True})
    assert slow.matches({**base, "alert": "task-critical", "runtime": 31.0})
    assert "runtime: 31.0" in message({**base, "runtime": 31.0}, "http://ui")[1]
    assert link({**base, "runtime": 31.0}, "http://ui") == "http://ui/task?cluster=c&uuid=u"
    with pytest.raises(RulesError, match="min_runtime must be a number >= 0"):
        load_rules("[[rule]]\nurls=['a://']\nmin_runtime=-1\n")


def test_messages_link_to_the_ui_and_keep_hostile_text_as_text():
    alert = {"v": 1, "alert": "task-critical", "cluster": "prod&x=1", "key": "3f2a/../x?y", "at": 1795487000.0,
             "name": "<script>alert(1)</script>", "retries": 3, "exception_type": "KeyError", "exception": "x" * 5000}  # fmt: skip
    title, body = message(alert, "https://monitor.example/")
    assert title == "[prod&x=1] task-critical: <script>alert(1)</script>"
    assert "exception: " + "x" * 500 + "… (5,000 characters)" in body and "retries: 3" in body
    assert body.endswith("https://monitor.example/task?cluster=prod%26x%3D1&uuid=3f2a%2F..%2Fx%3Fy")
    assert "at: 2026-11-24 02:23:20 UTC" in body
    assert link({"alert": "failure-burst", "cluster": "c", "name": "a b"}, "http://u") == "http://u/failures?cluster=c&name=a+b"
    assert link({"alert": "worker-lost", "cluster": "c", "key": "c/h"}, "http://u") == "http://u/workers?cluster=c"


def test_limiter_dedupes_by_key_and_rate_limits_per_rule():
    critical, workers = load_rules(RULES)
    limiter = Limiter()
    assert limiter.allow(critical, "k1", 0.0) is None
    assert limiter.allow(critical, "k1", 10.0) == "duplicate"
    assert limiter.allow(workers, "k1", 10.0) is None  # rules are separate
    assert limiter.allow(critical, "k2", 20.0) is None
    assert limiter.allow(critical, "k3", 30.0) == "rate-limited"  # 2 per minute
    assert limiter.allow(critical, "k3", 61.0) is None  # the first left the minute
    assert limiter.allow(critical, "k1", 700.0) is None  # past dedupe_seconds


def test_grouping_windows_send_one_message_and_hold_their_offsets(monkeypatch):
    import orjson

    from streams import notify
    from streams.config import Settings

    sent = []
    monkeypatch.setattr(notify, "deliver", lambda url, title, body, attempts: sent.append((url, title, body)) or True)
    now = [0.0]
    rules = load_rules('[[rule]]\nname="digest"\ngroup_seconds=10\nurls=["json://x/d"]\n[[rule]]\nname="now"\nurls=["json://x/n"]\n'
                       'alerts=["worker-lost"]')  # fmt: skip
    notifier = notify.Notifier(Settings.load(environ={}), rules, clock=lambda: now[0])
    records = [(0, 5, orjson.dumps({"alert": "task-critical", "cluster": "c", "key": "u1", "name": "t"})),
               (1, 7, orjson.dumps({"alert": "task-critical", "cluster": "c", "key": "u2", "name": "t"})),
               (0, 6, orjson.dumps({"alert": "worker-lost", "cluster": "c", "key": "c/h", "hostname": "h"})),
               (0, 8, b"not json")]  # fmt: skip
    notifier.handle(records)
    assert [s[0] for s in sent] == ["json://x/n"]  # the worker-lost alert at once; the digest rule holds all three
    sent.clear()
    assert notifier.held() == {0: 5, 1: 7}  # the digest's records stay uncommitted
    now[0] = 9.0
    notifier.flush()
    assert sent == [] and notifier.held() == {0: 5, 1: 7}
    now[0] = 10.0
    notifier.flush()
    ((url, title, body),) = sent
    assert url == "json://x/d" and title.startswith("3 alerts (digest): [c] task-critical: t") and body.count("http://127.0.0.1:9466/") == 3
    assert notifier.held() == {} and notifier.counts["undecodable"] == 1
    notifier.pool.shutdown()


def test_the_limiter_forgets_keys_whose_period_is_over(monkeypatch):
    from streams import notify

    monkeypatch.setattr(notify, "SEEN_PRUNE_AT", 10)
    rule, limiter = Rule("r", ("a://",), dedupe_seconds=5, rate_limit_per_minute=10_000), Limiter()
    for i in range(50):
        assert limiter.allow(rule, f"k{i}", float(i)) is None
    assert len(limiter.seen) <= 11 and limiter.allow(rule, "k49", 50.0) == "duplicate"
