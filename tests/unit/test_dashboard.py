"""The Grafana dashboard (docs/grafana/celery-monitor.json) only uses metrics and labels we export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from streams.engine import TaskEvent, iter_events
from streams.exporter import CeleryExporter
from streams.metrics import StreamsMetrics
from tests.unit.test_exporter import run

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "celery-monitor.json"
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped sample
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
OUR_METRIC = re.compile(r"(?<![$\w])((?:celery|streams|bridge)_[a-z0-9_]+)\b")  # not a $variable


def _panels(items):
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs + variables


def exported(scenario_events) -> dict[str, set[str]]:
    """Every sample name the pipeline can expose -> its label names."""
    exporter = CeleryExporter(clock=lambda: 1_000.0)
    run(exporter, [e for v in scenario_events for e in iter_events(v, "c") if isinstance(e, TaskEvent)])
    exporter.worker(0, {"cluster": "c", "hostname": "w@h", "state": "ONLINE", "active": 1})
    exporter.queue_sample(0, {"cluster": "c", "queue": "celery", "role": "task", "messages": 1, "consumers": 1,
                              "workers": 1, "processes": 1, "sampled_at": 999.0, "interval": 10.0})  # fmt: skip
    registry = CollectorRegistry()
    registry.register(exporter)
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    for ours in (StreamsMetrics(), BridgeMetrics()):
        for metric in vars(ours).values():
            if hasattr(metric, "_labelnames"):  # prometheus_client's metric wrappers
                for suffix in suffixes[metric._type]:
                    labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                    names.setdefault(metric._name + suffix, set()).update(labels)
    return names


def test_every_metric_and_label_the_dashboard_uses_is_exported(scenario_events):
    available = exported(scenario_events)
    used = set()
    for query in queries():
        in_query: dict[str, set[str]] = {}
        for metric, matchers in SELECTOR.findall(query):
            labels = set(MATCHER.findall(matchers))
            assert metric in available, f"{metric} is not exported (in {query!r})"
            assert labels <= available[metric] | TARGET_LABELS, f"{metric} has no label {labels - available[metric]} ({query!r})"
            in_query[metric] = available[metric]
        for metric, label in LABEL_VALUES.findall(query):
            assert metric in available, f"label_values({metric}, ...): {metric} is not exported"
            assert label in available.get(metric, set()) | TARGET_LABELS, f"label_values({metric}, {label}): not exported"
            in_query[metric] = available[metric]
        for group in BY.findall(query):
            labels = {label.strip() for label in group.split(",") if label.strip()}
            assert labels <= set().union(*in_query.values()) | TARGET_LABELS, f"by ({group}) in {query!r}"
        bare = set(OUR_METRIC.findall(query)) - set(in_query)
        assert not bare, f"give every selector a matcher so this test sees its labels: {bare} in {query!r}"
        used |= set(in_query)
    celery = {name for name in available if name.startswith("celery_")}
    print(f"dashboard uses {len(used)} metrics; celery-exporter names exported: {len(celery)}")
    assert {"celery_queue_length", "celery_worker_up", "celery_task_runtime_bucket", "celery_task_failed_total"} <= used


def test_dashboard_is_grafana_json():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["refId"]
