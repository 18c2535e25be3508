"""`celery-monitor report`: the analytics questions in sql/queries/ (shipped as streams.sql), answered from ClickHouse."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Callable

from tabulate import tabulate

from .resources import fragments_dir, queries_dir

QUERIES_DIR = queries_dir()
FRAGMENTS_DIR = fragments_dir()  # shared conditions: {name} in a query -> (its SQL)
DEFAULT_QUERIES = (
    "tasks_by_state",
    "throughput_per_minute",
    "finished_per_minute_by_name",
    "failure_rate_by_name",
    "runtime_percentiles_by_name",
    "queue_wait_by_name",
    "retries_and_recovery",
    "critical_tasks",
    "revocation_reasons",
    "rejections",
    "top_exceptions",
    "failure_groups",
    "worker_status",
    "clusters_compared",
    "queue_lengths",
)


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    sql: str


def load_query(name: str, db: str) -> Query:
    text = (QUERIES_DIR / f"{name}.sql").read_text()
    title = name
    for line in text.splitlines():
        if line.startswith("-- title:"):
            title = line.split(":", 1)[1].strip()
    body = _without_comments(text).replace("{db}", db)
    for fragment, condition in fragments().items():
        body = body.replace("{" + fragment + "}", f"({condition})")
    return Query(name, title, body.strip())


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("--"))


def fragments() -> dict[str, str]:
    """Conditions several questions share, defined once in sql/fragments/<name>.sql."""
    return {path.stem: _without_comments(path.read_text()).strip() for path in sorted(FRAGMENTS_DIR.glob("*.sql"))}


@dataclass
class Answer:
    query: Query
    columns: list[str]
    rows: list[tuple]


def run_report(
    execute: Callable[[str, dict], tuple[list[str], list[tuple]]],
    db: str,
    params: dict,
    names: tuple[str, ...] = DEFAULT_QUERIES,
) -> list[Answer]:
    params = {"cluster": "", "name": "", "since": 0, **params}
    answers = []
    for name in names:
        query = load_query(name, db)
        columns, rows = execute(query.sql, params)
        answers.append(Answer(query, columns, rows))
    return answers


SEARCH_COLUMNS = ("cluster", "uuid", "name", "state", "worker", "first_seen_at", "runtime", "exception_type")


def search_tasks(execute, db: str, terms: tuple, cluster: str = "", name: str = "", since: float = 0.0, limit: int = 100) -> Answer:
    """The tasks a search finds (newest first, at most ``limit``), as an answer ``render`` prints:
    the same query as the UI's task list (streams/ui/queries.py)."""
    from .ui import queries

    present = queries.table_columns(execute, db, "tasks")
    where = queries.TaskFilter(cluster=cluster, name=name, since=since, search=tuple(terms))
    rows = queries.tasks(execute, db, present, where, limit)
    title = "tasks found by: " + " ".join(str(t) for t in where.terms()) if where.terms() else "tasks"
    return Answer(Query("search", title, ""), list(SEARCH_COLUMNS), [tuple(r.get(c) for c in SEARCH_COLUMNS) for r in rows])


def render(answers: list[Answer], fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(
            {a.query.name: [dict(zip(a.columns, row)) for row in a.rows] for a in answers}, default=str, indent=2
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        for a in answers:
            writer.writerow([f"# {a.query.name}"])
            writer.writerow(a.columns)
            writer.writerows(a.rows)
        return buf.getvalue()
    parts = []
    for a in answers:
        parts.append(f"== {a.query.title} ==")
        parts.append(tabulate(a.rows, headers=a.columns, tablefmt="simple") if a.rows else "(no rows)")
        parts.append("")
    return "\n".join(parts)
