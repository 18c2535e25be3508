"""Audit records: the schema, the sink's row for ClickHouse's audit table (chdb), the queries the UI reads them with."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from streams.control.audit import AUDIT_COLUMNS, audit_row, row
from streams.migrate import migrate
from streams.ui import queries
from tests.sqlkit import Chdb, insert_sql

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "audit.v1.json").read_text())
REQUEST = {"request_id": "r-1", "at": 1_700_000_000.5, "user": "alice", "role": "operator", "via": "basic", "action": "retry",
           "dry_run": False, "selection": {"cluster": "c", "q": "bulk", "options": {}}, "cluster": "c", "control": "host:1"}  # fmt: skip


def records() -> list[dict]:
    task = {"cluster": "c", "uuid": "u-1", "name": "proj.add", "state": "FAILED", "eligible": True, "reason": "", "outcome": "ok",
            "detail": "sent as u-2", "new_uuid": "u-2"}  # fmt: skip
    return [
        row(REQUEST, "requested", counts={"selected": 1, "eligible": 1}),
        row(REQUEST, "requested", task={**task, "outcome": "", "detail": "sending"}),
        row(REQUEST, "done", finished_at=REQUEST["at"] + 1, counts={"selected": 1, "eligible": 1, "done": 1}),
        row(REQUEST, "done", task=task, finished_at=REQUEST["at"] + 1),
    ]


def test_records_match_the_schema_and_only_the_request_row_holds_the_selection():
    for record in records():
        jsonschema.validate(record, SCHEMA)
    request_row, task_row = records()[2], records()[3]
    assert json.loads(request_row["selection"])["q"] == "bulk" and task_row["selection"] == ""


def test_rows_land_in_the_audit_table_and_the_done_phase_wins(tmp_path):
    ch = Chdb(str(tmp_path))
    try:
        migrate(ch.execute, "celery")
        ch.execute(insert_sql("celery", "audit", AUDIT_COLUMNS, [audit_row(r) for r in records()]))

        def execute(sql, params):
            return ch.query(sql, params)

        (request,) = queries.audit_requests(execute, "celery", 10)
        assert (request["phase"], request["done_count"], request["via"], request["dry_run"]) == ("done", 1, "basic", 0)
        (task,) = queries.audit_tasks(execute, "celery", "r-1", 10)
        assert (task["outcome"], task["new_uuid"]) == ("ok", "u-2")
        assert [t["new_uuid"] for t in queries.audit_of_task(execute, "celery", "c", "u-2", 10)] == ["u-2"]  # the copy's page finds it
    finally:
        ch.close()
