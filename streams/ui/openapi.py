"""The API's OpenAPI 3.1 document (``GET /api/openapi.json``), written as data next to the
handlers in streams/ui/api.py; a unit test checks it is valid and names every route."""

from __future__ import annotations

from streams.engine.states import TASK_STATES


def _q(name: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema or {"type": "string"}}


def _path(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


CLUSTER = _q("cluster", "only this cluster ('' = every cluster)")
SEARCH_HELP = ("search text (docs/ui.md#search): words searched in name, args, kwargs, result, exception, traceback; "
               "qualifiers name: args: kwargs:key=value result: exception: traceback: state: worker: uuid:; -term negates")  # fmt: skip
ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
NUM = {"type": ["number", "null"]}
STR = {"type": ["string", "null"]}


def _ok(schema: dict, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}},
            "400": ERROR, "401": {"description": "UI_BASIC_AUTH / UI_TOKEN required"}, "503": ERROR, "504": ERROR}  # fmt: skip


FLOWER_TASK = {
    "type": "object",
    "description": "Flower's task fields (celery.events.state.Task.as_dict), Celery's state names; plus cluster and monitor_state",
    "properties": {
        "uuid": {"type": "string"}, "name": {"type": "string"},
        "state": {"type": "string", "enum": ["PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REJECTED", "REVOKED"]},
        **{k: NUM for k in ("received", "sent", "started", "rejected", "succeeded", "failed", "retried", "revoked", "timestamp", "runtime")},
        **{k: STR for k in ("args", "kwargs", "eta", "expires", "worker", "result", "exception", "traceback", "exchange",
                            "routing_key", "client", "root", "root_id", "parent", "parent_id")},
        "retries": {"type": "integer"}, "clock": {"type": "null"}, "children": {"type": "array", "items": {"type": "string"}},
        "cluster": {"type": "string"}, "monitor_state": {"type": "string", "enum": list(TASK_STATES)},
    },
}  # fmt: skip


def document() -> dict:
    from streams.cli import package_version

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Celery stream monitor API",
            "version": package_version(),
            "description": "Read-only. Flower's endpoints and shapes under /api/, native ones under /api/v1/. "
                           "Auth: the UI's (HTTP Basic with UI_BASIC_AUTH, or Authorization: Bearer UI_TOKEN). See docs/api.md.",
        },  # fmt: skip
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "FlowerTask": FLOWER_TASK,
                "Badge": {"type": "object", "properties": {"state": {"type": "string"}, "label": {"type": "string"},
                          "tags": {"type": "array", "items": {"type": "object", "properties": {"text": {"type": "string"}, "title": {"type": "string"}}}}}},
                "FailureGroup": {"type": "object", "description": "failures of one cluster, task name, exception type and message fingerprint",
                                 "properties": {k: {} for k in ("cluster", "name", "exception_type", "fingerprint", "count", "first_seen",
                                                                  "last_seen", "workers_count", "workers", "latest_uuid", "latest_exception",
                                                                  "latest_traceback", "trend", "search", "tasks_url")}},
            },  # fmt: skip
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}, "bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"basic": []}, {"bearer": []}],
        "paths": {
            "/api/tasks": {"get": {
                "summary": "Tasks, as Flower lists them: an object keyed by task id",
                "parameters": [
                    _q("limit", "at most this many tasks (capped by UI_ROW_LIMIT; absent = the cap)", {"type": "integer", "minimum": 0}),
                    _q("offset", "skip the first n tasks", {"type": "integer", "minimum": 0}),
                    _q("sort_by", "name, state, received or started; '-' first for descending (absent: newest first seen first)"),
                    _q("workername", "only tasks of this worker (whole hostname; 'All' = any)"),
                    _q("taskname", "only tasks of this name (whole name; 'All' = any)"),
                    _q("state", "Celery's state (SUCCESS, FAILURE, PENDING, ...) or the monitor's (RECOVERED, CRITICAL, ...), comma-separated"),
                    _q("received_start", "received after this time, %Y-%m-%d %H:%M in UTC"),
                    _q("received_end", "received before this time, %Y-%m-%d %H:%M in UTC"),
                    _q("search", SEARCH_HELP), CLUSTER,
                ],
                "responses": _ok({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/FlowerTask"}}),
            }},
            "/api/task/info/{uuid}": {"get": {
                "summary": "One task, Flower's fields", "parameters": [_path("uuid", "task id"), CLUSTER],
                "responses": {**_ok({"$ref": "#/components/schemas/FlowerTask"}), "404": ERROR},
            }},
            "/api/task/types": {"get": {"summary": "Task names seen", "parameters": [CLUSTER],
                "responses": _ok({"type": "object", "properties": {"task-types": {"type": "array", "items": {"type": "string"}}}})}},  # fmt: skip
            "/api/workers": {"get": {
                "summary": "Workers as Flower lists them (from their events: no broadcast, so queues/registered/conf are empty)",
                "parameters": [_q("workername", "only this worker"), _q("status", "true: {hostname: alive}"),
                               _q("refresh", "accepted and ignored (the monitor never broadcasts)"), CLUSTER],
                "responses": {**_ok({"type": "object", "additionalProperties": {"type": ["object", "boolean"]}}), "404": ERROR},
            }},  # fmt: skip
            "/api/queues/length": {"get": {"summary": "The newest sampled length of every task queue", "parameters": [CLUSTER],
                "responses": _ok({"type": "object", "properties": {"active_queues": {"type": "array", "items": {"type": "object",
                    "properties": {"name": {"type": "string"}, "messages": {"type": "integer"}, "cluster": {"type": "string"},
                                   "consumers": {"type": ["integer", "null"]}, "sampled_at": {"type": "number"}}}}}})}},  # fmt: skip
            "/api/openapi.json": {"get": {"summary": "This document", "responses": _ok({"type": "object"})}},
            "/api/v1/clusters": {"get": {"summary": "Cluster names", "responses": _ok({"type": "object",
                "properties": {"clusters": {"type": "array", "items": {"type": "string"}}}})}},  # fmt: skip
            "/api/v1/tasks": {"get": {
                "summary": "Tasks with the monitor's states and tags, newest first, in keyset pages (the UI's task list)",
                "parameters": [CLUSTER, _q("state", "any of these states (repeat the parameter)", {"type": "string", "enum": list(TASK_STATES)}),
                               _q("name", "a part of the name (any case) or a glob"), _q("worker", "whole hostname"),
                               _q("uuid", "task id or its beginning"), _q("window", "first seen in the last N seconds", {"type": "number"}),
                               _q("q", SEARCH_HELP), _q("before", "next_before of the previous page"),
                               _q("limit", "page size (default UI_PAGE_SIZE, capped by UI_ROW_LIMIT)", {"type": "integer", "minimum": 1})],
                "responses": _ok({"type": "object", "properties": {"tasks": {"type": "array", "items": {"type": "object"}},
                                                                     "next_before": {"type": ["string", "null"]}}}),
            }},  # fmt: skip
            "/api/v1/tasks/{uuid}": {"get": {
                "summary": "A task's record, badge, every attempt (worker, waits, runtime, events) and its workflow",
                "parameters": [_path("uuid", "task id"), CLUSTER],
                "responses": {**_ok({"type": "object", "properties": {"task": {"type": "object"}, "badge": {"$ref": "#/components/schemas/Badge"},
                              "attempts": {"type": "array"}, "events_count": {"type": "integer"}, "events_cut": {"type": "boolean"},
                              "workflow": {"type": "array"}}}), "404": ERROR},
            }},  # fmt: skip
            "/api/v1/workers": {"get": {"summary": "Workers with their state, reason and badge", "parameters": [CLUSTER],
                "responses": _ok({"type": "object", "properties": {"workers": {"type": "array"}, "cut": {"type": "boolean"}}})}},  # fmt: skip
            "/api/v1/failure-groups": {"get": {
                "summary": "Failed and critical tasks grouped by cluster, task name, exception type and message fingerprint, newest first",
                "parameters": [CLUSTER, _q("name", "a part of the task name (any case) or a glob"),
                               _q("window", "failed tasks first seen in the last N seconds (the trend spans it; default 24 h)", {"type": "number"}),
                               _q("limit", "at most this many groups (capped by UI_ROW_LIMIT)", {"type": "integer", "minimum": 1})],
                "responses": _ok({"type": "object", "properties": {"groups": {"type": "array", "items": {"$ref": "#/components/schemas/FailureGroup"}},
                                                                     "cut": {"type": "boolean"}}}),
            }},  # fmt: skip
            "/api/v1/audit": {"get": {
                "summary": "Task control's audit: requests newest first; with request_id its tasks; with uuid and cluster what selected or created one task",
                "parameters": [CLUSTER, _q("request_id", "one control request"), _q("uuid", "one task (needs cluster)"), _q("user", "requests of one user")],
                "responses": _ok({"type": "object", "properties": {"requests": {"type": "array"}, "tasks": {"type": "array"}}}),
            }},  # fmt: skip
            "/api/v1/control": {"post": {
                "summary": "Task control (operators; needs celery-monitor control): revoke, terminate or retry the selected tasks, dry run first",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["action", "selection"], "additionalProperties": False,
                    "properties": {
                        "action": {"enum": ["revoke", "terminate", "retry"]},
                        "dry_run": {"type": "boolean", "default": True},
                        "selection": {"type": "object", "description": "the task list's filters: cluster, state (list), name (part or glob), "
                                      "taskname (exact), worker, uuid (prefix), uuids (list), q (search), window (s)"},
                        "options": {"type": "object", "properties": {"signal": {"type": "string", "default": "SIGTERM"},
                                                                     "queue": {"type": "string", "description": "retry: where, when task-sent did not say"}}},
                    }}}}},  # fmt: skip
                "responses": {
                    "200": {"description": "selected, eligible, done, not_eligible (reason, tasks), tasks (per task: eligible, reason, outcome, detail, new_uuid)",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "bad request"}, "403": {"description": "not an operator, or not JSON"},
                    "404": {"description": "task control is off"}, "413": {"description": "selection over CONTROL_SELECT_LIMIT"},
                    "503": {"description": "control, ClickHouse or the audit topic unavailable: nothing was done"},
                },
            }},  # fmt: skip
        },
    }
