"""The read-only HTTP API, on the UI's server and behind its auth (``Guard``): Flower's endpoints
and shapes, so a script written for Flower works unchanged, and native endpoints with what only
this product knows. Documented in docs/api.md; the OpenAPI document is ``GET /api/openapi.json``.

Flower-compatible (``/api/...``)::

    GET /api/tasks             {uuid: task} — limit, offset, sort_by, workername, taskname, state,
                               received_start, received_end, search (streams/search.py)
    GET /api/task/info/<id>    one task, Flower's fields
    GET /api/task/types        {"task-types": [...]}
    GET /api/workers           {hostname: {...}} — workername, status
    GET /api/queues/length     {"active_queues": [{"name", "messages"}]}

Native (``/api/v1/...``): clusters, tasks (Leek's states, tags, keyset pages), a task with its
attempts and raw-event timeline, workers, failure groups.

Every query goes through ``queries`` (parameterised) and the UI's pool (read-only, time and row
limits); every answer is JSON, errors too (``{"error": "..."}`` with 400/404/422/503/504).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streams import search
from streams.engine import states as S

from . import badges, queries
from .db import ClickHouseDown, QueryTimeout, TooManyRows

log = logging.getLogger("streams.ui.api")


# Celery's own state names (what Flower shows) for the product's (Leek's) states.
CELERY_STATE = {
    S.QUEUED: "PENDING", S.RECEIVED: "RECEIVED", S.STARTED: "STARTED", S.SUCCEEDED: "SUCCESS", S.RECOVERED: "SUCCESS",
    S.FAILED: "FAILURE", S.CRITICAL: "FAILURE", S.RETRY: "RETRY", S.REJECTED: "REJECTED", S.REVOKED: "REVOKED",
}  # fmt: skip
STATES_OF_CELERY_STATE: dict[str, tuple[str, ...]] = {}
for _ours, _celery in CELERY_STATE.items():
    STATES_OF_CELERY_STATE[_celery] = STATES_OF_CELERY_STATE.get(_celery, ()) + (_ours,)

# Flower's task fields (celery.events.state.Task.as_dict) and where each comes from in `tasks`.
FLOWER_FIELDS = {
    "uuid": "uuid", "name": "name", "state": None, "received": "received_at", "sent": "queued_at",
    "started": "started_at", "rejected": "rejected_at", "succeeded": "succeeded_at", "failed": "failed_at",
    "retried": "retried_at", "revoked": "revoked_at", "args": "args", "kwargs": "kwargs", "eta": "eta",
    "expires": "expires", "retries": "retries", "worker": "worker", "result": "result", "exception": "exception",
    "timestamp": "last_seen_at", "runtime": "runtime", "traceback": "traceback", "exchange": "exchange",
    "routing_key": "routing_key", "clock": None, "client": "client", "root": "root_id", "root_id": "root_id",
    "parent": "parent_id", "parent_id": "parent_id", "children": None,
}  # fmt: skip
MAX_OFFSET = 10_000_000  # ClickHouse refuses OFFSET past 2^63; deeper pages are a full scan anyway
FLOWER_TIME = "%Y-%m-%d %H:%M"  # received_start / received_end, as Flower reads them (here: UTC)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def json_response(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS), status_code=status, media_type="application/json")


def flower_task(row: dict) -> dict:
    """A task record in Flower's shape (Celery's state names), plus ``cluster`` and ``monitor_state``."""
    out = {}
    for field, column in FLOWER_FIELDS.items():
        out[field] = row.get(column) if column else None
    out["state"] = CELERY_STATE.get(row.get("state"), row.get("state"))
    out["children"] = []
    out["cluster"] = row.get("cluster")
    out["monitor_state"] = row.get("state")
    return out


def _arg(request: Request, name: str, default: str = "") -> str:
    from .app import MAX_PARAM_CHARS

    value = request.query_params.get(name, default)
    if len(value) > MAX_PARAM_CHARS:
        raise ApiError(400, f"parameter {name!r} is longer than {MAX_PARAM_CHARS:,} characters")
    return value


def _int(request: Request, name: str, default: int | None, low: int = 0) -> int | None:
    raw = _arg(request, name).strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"parameter {name!r} must be an integer, got {raw[:50]!r}") from None
    if value < low:
        raise ApiError(400, f"parameter {name!r} must be >= {low}")
    return value


def _flower_time(request: Request, name: str) -> float:
    raw = _arg(request, name).strip()
    if not raw:
        return 0.0
    try:
        return dt.datetime.strptime(raw, FLOWER_TIME).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise ApiError(400, f"parameter {name!r} must be {FLOWER_TIME} (UTC), got {raw[:50]!r}") from None


def parse_states(values) -> tuple[str, ...]:
    """state= values (each comma-separated): ours (Leek's) or Celery's names (SUCCESS, FAILURE,
    PENDING...: Flower's), any case; 'ALL' and blanks add nothing. ValueError names an unknown one."""
    out: list[str] = []
    for raw in values:
        for item in (s.strip().upper() for s in raw.split(",")):
            if not item or item == "ALL":
                continue
            if item in S.TASK_STATES:
                out.append(item)
            elif item in STATES_OF_CELERY_STATE:
                out.extend(STATES_OF_CELERY_STATE[item])
            else:
                known = sorted(set(S.TASK_STATES) | set(STATES_OF_CELERY_STATE))
                raise ValueError(f"state {item[:50]!r} is not a task state ({', '.join(known)})")
    return tuple(dict.fromkeys(out))


def _states(raw: str) -> tuple[str, ...]:
    try:
        return parse_states([raw])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _terms(request: Request, name: str) -> tuple:
    try:
        return search.parse(_arg(request, name))
    except search.SearchError as exc:
        raise ApiError(400, f"search: {exc}") from None


def _all(value: str) -> str:
    return "" if value == "All" else value  # Flower's UI sends 'All' for no filter


class Api:
    """Endpoint handlers over the UI's ``execute``, database and limits."""

    def __init__(self, ui):
        self.ui = ui

    @property
    def execute(self):
        return self.ui.execute

    @property
    def db(self) -> str:
        return self.ui.db

    # Flower ------------------------------------------------------------------------------------
    def tasks(self, request: Request) -> Response:
        limit = _int(request, "limit", None, low=0)
        limit = self.ui.row_limit if limit is None or limit > self.ui.row_limit else limit
        offset = _int(request, "offset", 0) or 0
        if offset > MAX_OFFSET:
            raise ApiError(400, f"parameter 'offset' must be <= {MAX_OFFSET:,} (page with received_start/received_end instead)")
        sort_by = _arg(request, "sort_by").strip()
        descending = sort_by.startswith("-")
        sort_by = sort_by.lstrip("-")
        if sort_by and sort_by not in queries.SORT_COLUMNS:
            raise ApiError(400, f"sort_by must be one of {', '.join(queries.SORT_COLUMNS)} (with '-' for descending)")
        where = queries.TaskFilter(
            cluster=_arg(request, "cluster"), states=_states(_arg(request, "state")),
            worker=_all(_arg(request, "workername")), exact_name=_all(_arg(request, "taskname")),
            received_since=_flower_time(request, "received_start"), received_until=_flower_time(request, "received_end"),
            search=_terms(request, "search"),
        )  # fmt: skip
        if limit == 0:
            return json_response({})
        rows = queries.tasks_sorted(self.execute, self.db, where, limit, offset, sort_by, descending)
        return json_response({r["uuid"]: flower_task(r) for r in rows})

    def _one_task(self, request: Request, uuid: str) -> dict:
        found = queries.task(self.execute, self.db, _arg(request, "cluster"), uuid)
        if not found:
            raise ApiError(404, f"Unknown task '{uuid[:200]}'")
        return max(found, key=lambda r: r["last_seen_at"])  # a uuid in two clusters: the newest (cluster= picks one)

    def task_info(self, request: Request) -> Response:
        return json_response(flower_task(self._one_task(request, request.path_params["uuid"])))

    def task_types(self, request: Request) -> Response:
        names = queries.task_names(self.execute, self.db, _arg(request, "cluster"), self.ui.row_limit)
        return json_response({"task-types": names})

    def workers(self, request: Request) -> Response:
        rows = queries.workers(self.execute, self.db, self.ui.columns("workers"), _arg(request, "cluster"), self.ui.row_limit)
        name = _arg(request, "workername")
        if name:
            rows = [r for r in rows if r["hostname"] == name]
            if not rows:
                raise ApiError(404, f"Unknown worker '{name[:200]}'")
        if _arg(request, "status").lower() in ("1", "true", "yes"):
            return json_response({r["hostname"]: r["state"] != S.OFFLINE for r in rows})
        out = {}
        for r in rows:
            out[r["hostname"]] = {
                "stats": {"pid": r.get("pid"), "clock": None, "total": {}, "prefetch_count": None,
                          "pool": {"processes": []}, "sw_ident": r.get("sw_ident"), "sw_ver": r.get("sw_ver"),
                          "sw_sys": r.get("sw_sys"), "loadavg": r.get("loadavg"), "freq": r.get("freq")},
                "active_queues": [], "registered": [], "scheduled": [], "active": [], "reserved": [], "revoked": [], "conf": {},
                "timestamp": r.get("heartbeat_at") or r.get("online_at"),
                "cluster": r["cluster"], "monitor_state": r["state"], "alive": r["state"] != S.OFFLINE,
                "active_count": r.get("active"), "processed": r.get("processed"),
            }  # fmt: skip
        return json_response(out)

    def queue_lengths(self, request: Request) -> Response:
        rows = queries.queue_lengths(self.execute, self.db, _arg(request, "cluster"), self.ui.row_limit)
        return json_response({"active_queues": [{"name": r["queue"], "messages": r["messages"], "cluster": r["cluster"],
                                                  "consumers": r["consumers"], "sampled_at": r["newest_at"]} for r in rows]})  # fmt: skip

    # native ------------------------------------------------------------------------------------
    def clusters(self, request: Request) -> Response:
        return json_response({"clusters": queries.clusters(self.execute, self.db, self.ui.row_limit)})

    def native_tasks(self, request: Request) -> Response:
        from .app import BadRequest, _cursor, task_filter

        try:
            where = task_filter(request, time.time())
            before = _cursor(request)
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        limit = _int(request, "limit", self.ui.page_size, low=1)
        limit = min(limit, self.ui.row_limit)
        rows = queries.tasks(self.execute, self.db, self.ui.columns("tasks"), where, limit + 1, before)
        more = len(rows) > limit
        rows = rows[:limit]
        for r in rows:
            r["badge"] = _badge(badges.task_badge(r))
        cursor = f"{rows[-1]['first_seen_at']!r}:{rows[-1]['uuid']}" if more and rows else None
        return json_response({"tasks": rows, "next_before": cursor})

    def native_task(self, request: Request) -> Response:
        from .app import BadRequest

        uuid = request.path_params["uuid"]
        record = self._one_task(request, uuid)
        params = dict(request.query_params)
        params.update(uuid=uuid, cluster=record["cluster"])
        scope = {**request.scope, "query_string": queries_string(params).encode()}
        try:
            context = self.ui._task(Request(scope))
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        record = context["record"]
        attempts = [{
            "number": a.number, "number_known": a.number_known, "delivery": a.delivery, "worker": a.hostname,
            "started": a.started, "ended": a.ended, "outcome": a.outcome[0] if a.outcome else None,
            "broker_wait": a.broker_wait, "queue_wait": a.queue_wait, "runtime": a.runtime,
            "events": [{k: e.get(k) for k in ("type", "timestamp", "hostname", "pid", "clock", "_received_at")} for e in a.events],
        } for a in context["attempts"]]  # fmt: skip
        graph = context.get("graph")
        workflow = [{"uuid": n.row["uuid"], "name": n.row.get("name"), "state": n.row.get("state"), "depth": n.depth,
                     "parent_id": n.row.get("parent_id")} for n in graph.nodes] if graph else []  # fmt: skip
        return json_response({"task": record, "badge": _badge(badges.task_badge(record)), "attempts": attempts,
                              "events_count": context["events_count"], "events_cut": context["events_cut"],
                              "workflow": workflow})  # fmt: skip

    def native_workers(self, request: Request) -> Response:
        rows = queries.workers(self.execute, self.db, self.ui.columns("workers"), _arg(request, "cluster"), self.ui.row_limit + 1)
        cut = len(rows) > self.ui.row_limit
        rows = rows[: self.ui.row_limit]
        for r in rows:
            r["badge"] = _badge(badges.worker_badge(r))
        return json_response({"workers": rows, "cut": cut})

    def audit(self, request: Request) -> Response:
        """GET /api/v1/audit: control requests, newest first (?user=); ?request_id= one request
        with its tasks; ?uuid= (and cluster=) what selected or created one task."""
        from .app import _param

        if not self.ui.columns("audit"):
            return json_response({"requests": [], "tasks": []})
        request_id, uuid, cluster = _param(request, "request_id"), _param(request, "uuid"), _param(request, "cluster")
        limit = self.ui.row_limit
        if uuid:
            if not cluster:
                raise ApiError(400, "uuid= needs cluster= (a task id is unique per cluster)")
            return json_response({"tasks": [_audit_json(t) for t in queries.audit_of_task(self.execute, self.db, cluster, uuid, limit)]})
        requests = queries.audit_requests(self.execute, self.db, limit, request_id, _param(request, "user"))
        tasks = queries.audit_tasks(self.execute, self.db, request_id, limit) if request_id else []
        return json_response({"requests": [_audit_json(r) for r in requests], "tasks": [_audit_json(t) for t in tasks]})

    def failure_groups(self, request: Request) -> Response:
        from .app import BadRequest

        try:
            groups, cut, _ = self.ui.failure_groups(request)
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        limit = _int(request, "limit", None, low=1)
        if limit is not None:
            cut, groups = cut or len(groups) > limit, groups[:limit]
        for g in groups:
            g["tasks_url"] = "/tasks?" + queries_string({"cluster": g["cluster"], "q": g["search"]})
        return json_response({"groups": groups, "cut": cut})

    def openapi(self, request: Request) -> Response:
        from .openapi import document

        return json_response(document())


def queries_string(params: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def _badge(badge) -> dict:
    return {"state": badge.state, "label": badge.label, "tags": [{"text": t.text, "title": t.title} for t in badge.tags]}


def routes(ui) -> list[Route]:
    api = Api(ui)

    def handler(method):
        def endpoint(request: Request) -> Response:
            try:
                return method(request)
            except ApiError as exc:
                return json_response({"error": str(exc)}, exc.status)
            except QueryTimeout as exc:
                return json_response({"error": str(exc)}, 504)
            except ClickHouseDown as exc:
                return json_response({"error": str(exc)}, 503)
            except TooManyRows as exc:
                return json_response({"error": str(exc)}, 422)
            except Exception as exc:  # noqa: BLE001 - every answer is JSON, a database's refusal too
                log.exception("api: %s failed", request.url.path)
                return json_response({"error": f"{type(exc).__name__}: {str(exc)[:500]}"}, 500)

        return endpoint

    return [
        Route("/api/tasks", handler(api.tasks)),
        Route("/api/task/info/{uuid:path}", handler(api.task_info)),
        Route("/api/task/types", handler(api.task_types)),
        Route("/api/workers", handler(api.workers)),
        Route("/api/queues/length", handler(api.queue_lengths)),
        Route("/api/openapi.json", handler(api.openapi)),
        Route("/api/v1/clusters", handler(api.clusters)),
        Route("/api/v1/tasks", handler(api.native_tasks)),
        Route("/api/v1/tasks/{uuid:path}", handler(api.native_task)),
        Route("/api/v1/workers", handler(api.native_workers)),
        Route("/api/v1/failure-groups", handler(api.failure_groups)),
        Route("/api/v1/audit", handler(api.audit)),
        Route("/api/v1/control", control_endpoint(ui), methods=["POST"]),
    ]


def _audit_json(row: dict) -> dict:
    """An audit row as JSON: booleans as booleans, the selection as an object."""
    out = {**row}
    for key in ("dry_run", "eligible"):
        if key in out:
            out[key] = bool(out[key])
    if out.get("selection"):
        try:
            out["selection"] = orjson.loads(out["selection"])
        except orjson.JSONDecodeError:
            pass
    return out


def control_endpoint(ui):
    """POST /api/v1/control: {"action", "dry_run" (default true), "selection", "options"} ->
    celery-monitor control's answer (its status: 200, 400, 403, 413, 503); 404 while task control
    is off; 403 for a viewer or a request that is not JSON from this origin."""
    from starlette.concurrency import run_in_threadpool

    from streams.control.client import ControlUnavailable

    from .app import same_origin
    from .auth import ANONYMOUS

    async def endpoint(request: Request) -> Response:
        identity = request.scope.get("auth", ANONYMOUS)
        if not same_origin(request) or request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return json_response({"error": "send JSON (Content-Type: application/json), not from another site's page"}, 403)
        if not ui.control.enabled:
            return json_response({"error": "task control is off (CONTROL_URL / CONTROL_SECRET)"}, 404)
        if not identity.operator:
            return json_response({"error": f"{identity.user} is a {identity.role}: task control needs the operator role"}, 403)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_response({"error": "the body is not JSON"}, 400)
        if not isinstance(body, dict) or set(body) - {"action", "dry_run", "selection", "options"}:
            return json_response({"error": "a JSON object with action, dry_run, selection, options"}, 400)
        try:
            status, answer = await run_in_threadpool(ui.control.act, identity.user, identity.role, body.get("action"),
                                                     body.get("dry_run", True), body.get("selection") or {}, body.get("options") or {},
                                                     None, identity.via)  # fmt: skip
        except ControlUnavailable as exc:
            return json_response({"error": str(exc)}, 503)
        if status == 401:  # the UI's signature, not the caller's credentials
            return json_response({"error": f"celery-monitor control refused the UI's signature: {answer.get('error')} "
                                           "(CONTROL_SECRET must be the same on both)"}, 502)  # fmt: skip
        return json_response(answer, status)

    return endpoint
