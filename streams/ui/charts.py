"""The Analytics page: the answers of sql/queries/ (the same files `streams report` runs) as charts.

Pure: ``report.Answer`` -> a chart spec (JSON-ready dict) that static/ui.js hands to Chart.js.
Labels are untrusted text (task names, exception types): Chart.js draws them on a canvas, and the
spec reaches the page through Jinja's ``tojson`` (which escapes ``<``, ``>``, ``&`` and quotes).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from streams.report import Answer

from .badges import TASK_COLOURS, signal_name

# antd's palette, as the badges use it (static/ui.css has the same colours).
HEX = {
    "cyan": "#13c2c2", "green": "#52c41a", "geekblue": "#2f54eb", "blue": "#1677ff", "purple": "#722ed1",
    "red": "#f5222d", "volcano": "#a8071a", "magenta": "#eb2f96", "gold": "#faad14", "grey": "#8c8c8c",
}  # fmt: skip
SERIES = ["#1677ff", "#fa8c16", "#52c41a", "#eb2f96", "#722ed1", "#13c2c2", "#faad14", "#a8071a", "#2f54eb", "#8c8c8c"]
LABEL_CHARS = 60  # axis labels: a hostile 50 kB task name is cut


def _label(text) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _minute(value) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)[:16]  # chdb returns 'YYYY-MM-DD HH:MM:SS'


def _columns(answer: Answer) -> list[dict]:
    return [dict(zip(answer.columns, row)) for row in answer.rows]


def throughput_by_state(answer: Answer) -> dict:
    """finished_per_minute_by_name -> finished tasks per minute, stacked by final state."""
    minutes: set[str] = set()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in _columns(answer):
        minute = _minute(row["minute"])
        minutes.add(minute)
        counts[row["state"]][minute] += row["tasks"]
    labels = sorted(minutes)
    order = [s for s in TASK_COLOURS if s in counts]
    return {
        "kind": "bar", "stacked": True, "labels": labels,
        "datasets": [{"label": s, "data": [counts[s].get(m, 0) for m in labels], "color": HEX[TASK_COLOURS[s]]} for s in order],
        "y": "tasks finished per minute",
    }  # fmt: skip


def events_per_minute(answer: Answer) -> dict:
    """throughput_per_minute -> distinct events per minute, one line per event type."""
    minutes: set[str] = set()
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in _columns(answer):
        minute = _minute(row["minute"])
        minutes.add(minute)
        counts[row["type"]][minute] = row["events"]
    labels = sorted(minutes)
    return {
        "kind": "line", "labels": labels,
        "datasets": [{"label": _label(t), "data": [counts[t].get(m, 0) for m in labels], "color": SERIES[i % len(SERIES)]}
                     for i, t in enumerate(sorted(counts))],
        "y": "distinct events per minute",
    }  # fmt: skip


def runtime_percentiles(answer: Answer) -> dict:
    rows = _columns(answer)
    return {
        "kind": "bar", "labels": [_label(r["name"]) for r in rows], "log": True,
        "datasets": [{"label": p, "data": [r[f"{p}_ms"] for r in rows], "color": c}
                     for p, c in (("p50", "#1677ff"), ("p95", "#fa8c16"), ("p99", "#a8071a"))],
        "y": "runtime, ms (log scale)",
    }  # fmt: skip


def failure_rate(answer: Answer) -> dict:
    rows = sorted(_columns(answer), key=lambda r: (-r["failure_rate"], str(r["name"])))
    return {
        "kind": "bar", "horizontal": True, "labels": [_label(r["name"]) for r in rows], "percent": True,
        "datasets": [{"label": "failed (FAILED + CRITICAL) / tasks", "data": [r["failure_rate"] for r in rows], "color": HEX["red"]}],
        "y": "failure rate",
    }  # fmt: skip


def retries_and_recovery(answer: Answer) -> dict:
    rows = _columns(answer)
    return {
        "kind": "bar", "labels": [_label(r["name"]) for r in rows],
        "datasets": [
            {"label": "retried", "data": [r["retried"] for r in rows], "color": HEX["gold"]},
            {"label": "RECOVERED", "data": [r["recovered"] for r in rows], "color": HEX["purple"]},
            {"label": "CRITICAL", "data": [r["critical"] for r in rows], "color": HEX["volcano"]},
        ],
        "y": "tasks",
    }  # fmt: skip


def revocation_reasons(answer: Answer) -> dict:
    totals: dict[str, int] = defaultdict(int)
    for r in _columns(answer):
        reason = r["reason"] or "revoked"
        if reason == "terminated":
            reason = f"terminated ({signal_name(r['signum'])})" if r["signum"] else "terminated"
        totals[reason] += r["tasks"]
    labels = sorted(totals, key=lambda k: (-totals[k], k))
    return {
        "kind": "bar", "horizontal": True, "labels": labels,
        "datasets": [{"label": "revoked tasks", "data": [totals[k] for k in labels], "color": HEX["magenta"]}],
        "y": "tasks",
    }  # fmt: skip


def top_exceptions(answer: Answer) -> dict:
    rows = _columns(answer)
    return {
        "kind": "bar", "horizontal": True, "labels": [_label(r["exception_type"]) for r in rows],
        "datasets": [
            {"label": "tasks", "data": [r["tasks"] for r in rows], "color": HEX["gold"]},
            {"label": "failed", "data": [r["failed"] for r in rows], "color": HEX["red"]},
        ],
        "y": "tasks",
    }  # fmt: skip


# Query name (sql/queries/<name>.sql) -> (chart id, heading, spec builder). Order = page order.
CHARTS = {
    "finished_per_minute_by_name": ("throughput", "Throughput by final state", throughput_by_state),
    "throughput_per_minute": ("events", "Events per minute by type", events_per_minute),
    "runtime_percentiles_by_name": ("runtime", "Runtime p50 / p95 / p99 by task name", runtime_percentiles),
    "failure_rate_by_name": ("failures", "Failure rate by task name", failure_rate),
    "retries_and_recovery": ("retries", "Retries and recovery by task name", retries_and_recovery),
    "revocation_reasons": ("revocations", "Revocation reasons", revocation_reasons),
    "top_exceptions": ("exceptions", "Top exception types", top_exceptions),
}
