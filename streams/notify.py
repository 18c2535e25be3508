"""`celery-monitor notify`: the alerts topic delivered to people through Apprise (Slack, Teams,
e-mail, generic JSON webhooks, PagerDuty…), by rules in a TOML file (docs/notify.md).

Pure core: ``load_rules`` (the file, validated with clear errors), ``Rule.matches``, ``message``
(title, body and the link to the alert's page in the UI) and ``Limiter`` (de-duplication by the
alert's key and a rate limit per rule, on an injected clock). Thin edge: ``Notifier`` consumes the
topic with its own group, delivers each message to each URL of each matching rule (URLs in
parallel, each retried with backoff: a failing channel never holds up the others' deliveries),
and commits a batch's offsets only after every delivery of it succeeded or was given up and
logged. At-least-once: a kill between delivery and commit delivers that batch again.
"""

from __future__ import annotations

import fnmatch
import logging
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import orjson

log = logging.getLogger(__name__)

ALERTS = ("task-critical", "task-orphaned", "failure-burst", "worker-lost", "clock-drift", "task-slow", "failure-group", "event-dead-lettered")
RULE_KEYS = {"name", "alerts", "clusters", "tasks", "exclude_tasks", "states", "urls", "dedupe_seconds", "rate_limit_per_minute",
             "group_seconds", "min_runtime"}  # fmt: skip


class RulesError(ValueError):
    """The rules file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    name: str
    urls: tuple[str, ...]
    alerts: tuple[str, ...] = ALERTS
    clusters: tuple[str, ...] = ("*",)  # globs
    tasks: tuple[str, ...] = ("*",)  # globs over the task name (alerts without a name match only '*')
    exclude_tasks: tuple[str, ...] = ()
    states: tuple[str, ...] = ()  # task-orphaned: the task's state; '' = any
    dedupe_seconds: float = 3600.0  # the same alert key again within this: suppressed
    rate_limit_per_minute: int = 30  # more messages than this in a minute: suppressed
    group_seconds: float = 0.0  # > 0: the alerts of this many seconds go as one message
    min_runtime: float = 0.0  # > 0: only alerts with a runtime (task-slow, task-critical) of at least this many seconds

    def matches(self, alert: dict) -> bool:
        if alert.get("alert") not in self.alerts:
            return False
        cluster = alert.get("cluster") or ""
        if not any(fnmatch.fnmatchcase(cluster, g) for g in self.clusters):
            return False
        name = alert.get("name")
        if name is None:
            if self.tasks != ("*",):
                return False
        elif not any(fnmatch.fnmatchcase(name, g) for g in self.tasks) or any(fnmatch.fnmatchcase(name, g) for g in self.exclude_tasks):
            return False
        if self.min_runtime > 0:
            runtime = alert.get("runtime")
            if not isinstance(runtime, (int, float)) or isinstance(runtime, bool) or runtime < self.min_runtime:
                return False
        return not self.states or alert.get("state") in self.states


def _strings(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{where}: a list of non-empty strings (at least one)")
    return tuple(value)


def load_rules(text: str, source: str = "rules") -> tuple[Rule, ...]:
    """Rules from TOML text: ``[[rule]]`` tables (docs/notify.md). Unknown keys, alert kinds and
    empty URL lists are errors naming the rule."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not TOML: {exc}") from None
    unknown = set(data) - {"rule"}
    if unknown:
        raise RulesError(f"{source}: unknown top-level keys {sorted(unknown)} (only [[rule]] tables)")
    rules = []
    for i, raw in enumerate(data.get("rule", [])):
        where = f"{source}: rule {i + 1}" + (f" ({raw.get('name')!r})" if isinstance(raw, dict) and raw.get("name") else "")
        if not isinstance(raw, dict):
            raise RulesError(f"{where}: must be a table")
        bad = set(raw) - RULE_KEYS
        if bad:
            raise RulesError(f"{where}: unknown keys {sorted(bad)} (known: {', '.join(sorted(RULE_KEYS))})")
        if "urls" not in raw:
            raise RulesError(f"{where}: urls (Apprise URLs) are required")
        kw: dict = {"name": str(raw.get("name") or f"rule-{i + 1}"), "urls": _strings(raw["urls"], f"{where}: urls")}
        for key in ("alerts", "clusters", "tasks", "exclude_tasks", "states"):
            if key in raw:
                kw[key] = _strings(raw[key], f"{where}: {key}")
        wrong = [a for a in kw.get("alerts", ()) if a not in ALERTS]
        if wrong:
            raise RulesError(f"{where}: alerts {wrong} unknown (known: {', '.join(ALERTS)})")
        for key, kind in (("dedupe_seconds", (int, float)), ("rate_limit_per_minute", int), ("group_seconds", (int, float)),
                          ("min_runtime", (int, float))):  # fmt: skip
            if key in raw:
                if not isinstance(raw[key], kind) or isinstance(raw[key], bool) or raw[key] < 0:
                    raise RulesError(f"{where}: {key} must be a number >= 0")
                kw[key] = raw[key]
        rules.append(Rule(**kw))
    if not rules:
        raise RulesError(f"{source}: no [[rule]] tables: nothing would be delivered")
    return tuple(rules)


def load_rules_file(path: str) -> tuple[Rule, ...]:
    if not path:
        raise RulesError("NOTIFY_RULES is not set: the rules file (docs/notify.md)")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RulesError(f"NOTIFY_RULES={path}: {exc.strerror or exc}") from None
    return load_rules(text, path)


def link(alert: dict, ui_url: str) -> str:
    """The alert's page in the UI: the task, the failure groups of the name, or the workers."""
    base = ui_url.rstrip("/")
    cluster = alert.get("cluster") or ""
    kind = alert.get("alert")
    if kind in ("task-critical", "task-orphaned", "task-slow") or (kind == "event-dead-lettered" and "/" not in alert.get("key", "/")):
        return f"{base}/task?{urlencode({'cluster': cluster, 'uuid': alert.get('key', '')})}"
    if kind in ("failure-burst", "failure-group"):
        return f"{base}/failures?{urlencode({'cluster': cluster, 'name': alert.get('name') or ''})}"
    return f"{base}/workers?{urlencode({'cluster': cluster})}"


DETAILS = ("name", "exception_type", "exception", "fingerprint", "reason", "quiet_seconds", "retries", "failures", "window_seconds",
           "hostname", "worker", "state", "skew", "threshold", "runtime", "event_type", "cause", "detail", "topic", "partition", "offset")  # fmt: skip
MAX_FIELD = 500  # characters of one field in a message (a 50 kB exception would be refused by most channels)


def _cut(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + f"… ({len(text):,} characters)"


def message(alert: dict, ui_url: str) -> tuple[str, str]:
    """(title, plain-text body) of an alert; every field as text, cut at MAX_FIELD characters."""
    subject = alert.get("name") or alert.get("hostname") or alert.get("key", "")
    title = _cut(f"[{alert.get('cluster') or '-'}] {alert.get('alert')}: {subject}")
    lines = [f"{k}: {_cut(alert[k])}" for k in DETAILS if alert.get(k) not in (None, "")]
    lines.append(f"key: {_cut(alert.get('key', ''))}")
    if alert.get("at") is not None:
        lines.append("at: " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(alert["at"]))))
    lines.append(link(alert, ui_url))
    return title, "\n".join(lines)


SEEN_PRUNE_AT = 100_000  # de-duplication keys held before the expired ones are dropped


@dataclass
class Limiter:
    """Per rule: an alert key seen within ``dedupe_seconds`` is suppressed; past
    ``rate_limit_per_minute`` messages in the last 60 s, further ones are suppressed."""

    seen: dict[tuple[str, str], float] = field(default_factory=dict)  # (rule, key) -> until when it is a duplicate
    sent: dict[str, list[float]] = field(default_factory=dict)

    def allow(self, rule: Rule, key: str, now: float) -> str | None:
        """None when the message may go, else why it is suppressed ('duplicate' / 'rate-limited')."""
        until = self.seen.get((rule.name, key))
        if until is not None and now < until:
            return "duplicate"
        if len(self.seen) > SEEN_PRUNE_AT:  # a long-running notify forgets keys whose period is over
            self.seen = {k: t for k, t in self.seen.items() if now < t}
        recent = [t for t in self.sent.get(rule.name, []) if now - t < 60.0]
        self.sent[rule.name] = recent
        if len(recent) >= rule.rate_limit_per_minute:
            return "rate-limited"
        self.seen[(rule.name, key)] = now + rule.dedupe_seconds
        recent.append(now)
        return None


def deliver(url: str, title: str, body: str, attempts: int, sleep=time.sleep) -> bool:
    """One message to one Apprise URL, retried with backoff (1, 2, 4… s, at most 30); True when sent."""
    import apprise

    for attempt in range(attempts):
        sender = apprise.Apprise()
        if not sender.add(url):
            log.error("notify: %s is not an Apprise URL this installation supports: given up", url.split("://")[0] + "://…")
            return False
        if sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT):
            return True
        if attempt + 1 < attempts:
            sleep(min(30.0, 2.0**attempt))
    return False


def group_message(rule: Rule, messages: list[tuple[str, str]]) -> tuple[str, str]:
    """One message for the alerts a rule's grouping window collected: a count in the title, each
    alert's title and link in the body (at most GROUP_LINES of them)."""
    if len(messages) == 1:
        return messages[0]
    lines = []
    for title, body in messages[:GROUP_LINES]:
        lines.append(f"{title}\n  {body.splitlines()[-1]}")
    if len(messages) > GROUP_LINES:
        lines.append(f"… and {len(messages) - GROUP_LINES:,} more")
    return f"{len(messages)} alerts ({rule.name}): {messages[0][0]} …", "\n".join(lines)


GROUP_LINES = 50


@dataclass
class Pending:
    """A rule's grouping window: its messages and the records they came from (kept uncommitted)."""

    opened: float
    messages: list[tuple[str, str]] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)


class Notifier:
    """The alerts topic -> rules -> Apprise, committing after delivery."""

    def __init__(self, settings, rules: tuple[Rule, ...], clock=time.monotonic):
        from prometheus_client import REGISTRY, Counter

        self.settings = settings
        self.rules = rules
        self.clock = clock
        self.limiter = Limiter()
        self.stopping = False
        self.counts = {"sent": 0, "failed": 0, "suppressed": 0, "undecodable": 0}
        name = "celery_monitor_notify_messages"
        existing = REGISTRY._names_to_collectors.get(name + "_total")  # one Notifier per process, except in tests
        self.metric = existing or Counter(name, "alert messages by rule and outcome (sent, failed, suppressed)", ["rule", "outcome"])
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="notify")
        self.pending: dict[str, Pending] = {}

    def _count(self, rule: str, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.metric.labels(rule, outcome).inc()

    def handle(self, records: list[tuple[int, int, bytes]]) -> None:
        """Deliver what a batch of alert records ((partition, offset, value)) asks for: rules
        without a grouping window at once (returns when every delivery is done or given up),
        the others into their window (``flush`` sends them)."""
        jobs = []
        for partition, offset, value in records:
            try:
                alert = orjson.loads(value)
                if not isinstance(alert, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.counts["undecodable"] += 1
                log.error("notify: an alert record that is not JSON was skipped: %s", exc)
                continue
            title, body = message(alert, self.settings.notify_ui_url)
            for rule in self.rules:
                if not rule.matches(alert):
                    continue
                why = self.limiter.allow(rule, f"{alert.get('alert')}/{alert.get('cluster')}/{alert.get('key')}", self.clock())
                if why:
                    self._count(rule.name, "suppressed")
                    log.info("notify: %s %s suppressed by rule %s (%s)", alert.get("alert"), alert.get("key"), rule.name, why)
                    continue
                if rule.group_seconds > 0:
                    window = self.pending.setdefault(rule.name, Pending(self.clock()))
                    window.messages.append((title, body))
                    window.offsets.append((partition, offset))
                    continue
                jobs += self._send(rule, title, body)
        self._wait(jobs)

    def flush(self, everything: bool = False) -> None:
        """Send every grouping window that is over (``everything``: all of them)."""
        jobs = []
        for rule in self.rules:
            window = self.pending.get(rule.name)
            if window and (everything or self.clock() - window.opened >= rule.group_seconds):
                del self.pending[rule.name]
                jobs += self._send(rule, *group_message(rule, window.messages))
        self._wait(jobs)

    def held(self) -> dict[int, int]:
        """partition -> the lowest offset a grouping window still holds (not to be committed past)."""
        out: dict[int, int] = {}
        for window in self.pending.values():
            for partition, offset in window.offsets:
                out[partition] = min(offset, out.get(partition, offset))
        return out

    def _send(self, rule: Rule, title: str, body: str) -> list:
        return [(rule, url, self.pool.submit(deliver, url, title, body, self.settings.notify_retries)) for url in rule.urls]

    def _wait(self, jobs: list) -> None:
        for rule, url, job in jobs:
            if job.result():
                self._count(rule.name, "sent")
            else:
                self._count(rule.name, "failed")
                log.error("notify: delivery to %s (rule %s) given up after %d attempts", url.split("://")[0] + "://…", rule.name,
                          self.settings.notify_retries)  # fmt: skip

    def serve_metrics(self):
        """/metrics (celery_monitor_notify_messages_total{rule, outcome}) and /healthz on NOTIFY_METRICS_ADDR."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from .listen import serve_http

        return serve_http(self.settings.notify_metrics_addr, "notify_metrics_addr", {
            "/metrics": lambda: (200, generate_latest(), CONTENT_TYPE_LATEST),
            "/healthz": lambda: (200, b"ok\n", "text/plain"),
        }, name="notify-metrics")  # fmt: skip

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from .connections import librdkafka_options

        s = self.settings
        session_ms = int(s.group_session_timeout * 1000)
        consumer = Consumer({
            **librdkafka_options(s),
            "group.id": s.notify_group,
            "enable.auto.commit": False,  # commit after delivery
            "auto.offset.reset": "earliest",  # a new group delivers what the topic holds (docs/notify.md)
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": min(3000, max(300, session_ms // 6)),
            "max.poll.interval.ms": 600_000,
            **({"fetch.wait.max.ms": 100} if s.tansu_fixes else {}),
        })  # fmt: skip
        consumer.subscribe([s.topic_alerts])
        log.info("notify started: topic=%s group=%s rules=%s", s.topic_alerts, s.notify_group, [r.name for r in self.rules])
        done: dict[int, int] = {}  # partition -> next offset: every record before it handled (sent, given up, or in a window)
        committed: dict[int, int] = {}
        try:
            while not self.stopping:
                records = []
                for record in consumer.consume(num_messages=200, timeout=0.5):
                    if record.error():
                        log.warning("notify: consumer error: %s", record.error())
                        continue
                    records.append((record.partition(), record.offset(), record.value()))
                self.handle(records)
                for partition, offset, _ in records:
                    done[partition] = max(offset + 1, done.get(partition, 0))
                self.flush()
                held = self.held()
                # commit after delivery: up to what is handled, and never past a record a window still holds
                wanted = {p: min(n, held.get(p, n)) for p, n in done.items()}
                changed = [TopicPartition(s.topic_alerts, p, n) for p, n in wanted.items() if committed.get(p) != n]
                if changed:
                    try:
                        consumer.commit(offsets=changed, asynchronous=False)
                    except KafkaException as exc:  # e.g. a partition moved to another member: it re-delivers from its commit
                        log.warning("notify: commit of %s failed: %s", [(tp.partition, tp.offset) for tp in changed], exc)
                        continue
                    committed.update((tp.partition, tp.offset) for tp in changed)
                    log.info("notify: %s", ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        finally:
            consumer.close()
            self.pool.shutdown(wait=True)
