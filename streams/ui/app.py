"""The web UI: a read-only Starlette app over ClickHouse, server-rendered with Jinja2.

Pages: /tasks (list, filters, live rows), /task (one task: record, attempts timeline, workflow
graph), /workers, /analytics. Live parts are htmx fragments polled every UI_REFRESH_SECONDS
(/tasks/rows, /task/live, /workers/rows). Every request only reads (the two POST routes, /control
and /api/v1/control, forward an operator's request to celery-monitor control: docs/control.md),
every query goes through ``queries`` (parameterised) and ``db.Pool`` (time and row limits), and
every text from ClickHouse is escaped by Jinja's autoescape and isolated with ``<bdi>``
(right-to-left marks in a task name cannot reorder the page around it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from streams import search
from streams.config import Settings
from streams.control.client import ControlClient, ControlUnavailable
from streams.engine import states as S
from streams.report import Answer, load_query

from . import api
from . import attempts as attempts_mod
from . import badges, charts, queries, workflow
from .auth import ANONYMOUS, Authenticator
from .db import ClickHouseDown, Pool, QueryTimeout, TooManyRows

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NODE_MODULES = HERE / "node_modules"
# The browser libraries, from npm at `make setup` (streams/ui/package.json): served from here,
# never from a CDN (monitoring hosts are often offline).
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
}
WINDOWS = (("", "all time"), ("300", "last 5 min"), ("900", "last 15 min"), ("3600", "last hour"),
           ("21600", "last 6 hours"), ("86400", "last 24 hours"), ("604800", "last 7 days"))  # fmt: skip
SCHEMA_TTL = 30.0  # seconds the column list of a table is cached (the engine adds columns on upgrade)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
MAX_PARAM_CHARS = 100_000  # a filter value longer than this is refused (400), not sent to ClickHouse


TIME_SERIES = re.compile(r"ORDER BY minute\b")  # questions by minute: a chart shows the newest minutes


def _capped(sql: str, limit: int) -> str:
    """A question's SQL with at most ``limit`` rows (the UI's row cap: past it ClickHouse would
    refuse the whole answer): the first rows of its order, or the newest minutes of a time series."""
    order = " ORDER BY minute DESC" if TIME_SERIES.search(sql) else ""
    return f"SELECT * FROM ({sql}){order} LIMIT {int(limit)}"


class BadRequest(ValueError):
    pass


def missing_assets() -> list[str]:
    """Vendor files not installed (``make setup`` runs ``npm ci`` in streams/ui)."""
    return [path for path in VENDOR.values() if not (NODE_MODULES / path).is_file()]


# -- formatting (Jinja filters) ------------------------------------------------------------------
def fmt_ts(value) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def fmt_clock(value) -> str:
    """Time of day only (UTC), for dense tables; the full timestamp goes in the title."""
    return fmt_ts(value)[11:]


def fmt_duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{sign}{seconds:.2f} s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.1f} min"
    return f"{sign}{seconds / 3600:.1f} h"


def fmt_age(value, now: float | None = None) -> str:
    if value is None:
        return ""
    age = (now or time.time()) - float(value)
    if age < 0:
        return f"in {fmt_duration(-age)}"
    return f"{fmt_duration(age)} ago"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(counts: list[int]) -> str:
    """Counts as a row of block characters (0 = the lowest block), scaled to the largest."""
    top = max(counts, default=0)
    if not top:
        return SPARK[0] * len(counts)
    return "".join(SPARK[0] if not n else SPARK[1 + min(len(SPARK) - 2, int((len(SPARK) - 2) * n / top))] for n in counts)


def untrusted(text, limit: int | None = None, full_chars: int | None = None) -> Markup:
    """Text from ClickHouse as inert, direction-isolated HTML; cut at ``limit`` characters with a
    note of the full length (``full_chars`` when the query already cut it)."""
    if text is None:
        return Markup("")
    text = str(text)
    total = full_chars if full_chars is not None else len(text)
    cut = text if limit is None or len(text) <= limit else text[:limit]
    note = f"… ({total:,} characters)" if total > len(cut) else ""
    return Markup('<bdi class="u">{}</bdi>{}').format(cut, Markup('<span class="cut">{}</span>').format(note) if note else "")


def make_templates() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"], default=True))
    env.filters.update(ts=fmt_ts, clock=fmt_clock, duration=fmt_duration, age=fmt_age, u=untrusted)
    env.globals.update(qs=query_string, task_badge=badges.task_badge, worker_badge=badges.worker_badge, EVENT_COLOURS=badges.EVENT_COLOURS,
                       TASK_STATES=S.TASK_STATES, FINAL_STATES=S.FINAL_STATES, WINDOWS=WINDOWS)  # fmt: skip
    return env


# -- request parsing -----------------------------------------------------------------------------
def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if len(value) > MAX_PARAM_CHARS:
        raise BadRequest(f"parameter {name!r} is longer than {MAX_PARAM_CHARS:,} characters")
    return value.strip() if name != "name" else value  # a task name may really end in a space


def _number(request: Request, name: str) -> float:
    raw = _param(request, name)
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be a number of seconds, got {raw[:50]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"parameter {name!r} must be a positive number of seconds")
    return value


def _state_filter(request: Request) -> tuple[str, ...]:
    """state= (repeated or comma-separated): the product's (Leek's) states or Celery's names
    (FAILURE: FAILED and CRITICAL, ...), any case; anything else is a 400, never ignored."""
    from .api import parse_states

    try:
        return parse_states(raw[:MAX_PARAM_CHARS] for raw in request.query_params.getlist("state"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def task_filter(request: Request, now: float) -> queries.TaskFilter:
    states = _state_filter(request)
    window = _number(request, "window")
    uuid = _param(request, "uuid")
    try:
        terms = search.parse(_param(request, "q"))
    except search.SearchError as exc:
        raise BadRequest(f"search: {exc}") from None
    return queries.TaskFilter(
        cluster=_param(request, "cluster"), states=states, name=_param(request, "name"),
        worker=_param(request, "worker"), uuid=uuid, since=now - window if window else 0.0, search=terms,
    )  # fmt: skip


def _cursor(request: Request) -> tuple[float, str] | None:
    raw = _param(request, "before")
    if not raw:
        return None
    at, sep, uuid = raw.partition(":")
    try:
        value = float(at)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest("parameter 'before' must be <first_seen_at>:<uuid>")
    return value, uuid


def query_string(params: dict, **changes) -> str:
    merged = {**params, **changes}
    pairs = []
    for key, value in merged.items():
        if value in (None, "", ()):
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            pairs.append((key, item))
    return urlencode(pairs)


SELECTION_FIELDS = ("cluster", "name", "taskname", "worker", "uuid", "window", "q")


def form_selection(form) -> dict:
    """The task list's filters from a control form -> a control selection (control/service.py)."""
    selection: dict = {k: form.get(k, "").strip() for k in SELECTION_FIELDS if form.get(k, "").strip()}
    if form.getlist("state"):
        selection["state"] = [s for s in form.getlist("state") if s]
    if form.getlist("uuids"):
        selection["uuids"] = [u for u in form.getlist("uuids") if u]
    for key, value in selection.items():
        if sum(len(v) for v in (value if isinstance(value, list) else [value])) > MAX_PARAM_CHARS:
            raise BadRequest(f"parameter {key!r} is longer than {MAX_PARAM_CHARS:,} characters")
    return selection


class Forbidden(Exception):
    pass


class ControlDown(Exception):
    pass


def same_origin(request: Request) -> bool:
    """A state-changing request comes from this UI's own pages: htmx's header (a cross-site form
    cannot set it without a CORS preflight, which this server never grants) or JSON, and no other
    site's Origin or Sec-Fetch-Site."""
    headers = request.headers
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        return False
    return headers.get("hx-request") == "true" or headers.get("content-type", "").split(";")[0].strip() == "application/json"


# -- the app -------------------------------------------------------------------------------------
class UI:
    """Page handlers; ``execute`` is the ClickHouse pool (or chdb in tests)."""

    def __init__(self, settings: Settings, execute=None):
        self.settings = settings
        self.db = settings.clickhouse_database
        self.pool = None
        if execute is None:
            self.pool = Pool(settings)
            execute = self.pool.execute
        self.execute = execute
        self.templates = make_templates()
        self.row_limit = max(1, settings.ui_row_limit)
        self.page_size = max(1, min(settings.ui_page_size, self.row_limit))
        self._schema: dict[str, tuple[float, frozenset[str]]] = {}
        self.control = ControlClient(settings)

    # shared -------------------------------------------------------------------
    def columns(self, table: str) -> frozenset[str]:
        cached = self._schema.get(table)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        present = queries.table_columns(self.execute, self.db, table)
        self._schema[table] = (time.monotonic() + SCHEMA_TTL, present)
        return present

    def render(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("cluster", request.query_params.get("cluster", ""))
        identity = request.scope.get("auth", ANONYMOUS)
        context.update(
            request=request, refresh=self.settings.ui_refresh_seconds, now=time.time(), row_limit=self.row_limit,
            identity=identity, can_control=self.control.enabled and identity.operator,
        )  # fmt: skip
        return HTMLResponse(self.templates.get_template(template).render(context), status_code=status)

    def page(self, request: Request, template: str, **context) -> HTMLResponse:
        cluster = request.query_params.get("cluster", "")
        context["clusters"] = queries.clusters(self.execute, self.db, self.row_limit)
        if cluster and cluster not in context["clusters"]:
            context["clusters"].append(cluster)
        return self.render(request, template, **context)

    # tasks --------------------------------------------------------------------
    def _task_rows(self, request: Request) -> dict:
        now = time.time()
        where = task_filter(request, now)
        rows = queries.tasks(self.execute, self.db, self.columns("tasks"), where, self.page_size + 1, _cursor(request))
        more = len(rows) > self.page_size
        rows = rows[: self.page_size]
        params = {k: request.query_params.getlist(k) for k in ("cluster", "state", "name", "worker", "uuid", "window", "q")}
        older = query_string(params, before=f"{rows[-1]['first_seen_at']!r}:{rows[-1]['uuid']}") if more and rows else ""
        return {"rows": rows, "older": older, "params": params, "where": where, "paged": bool(_cursor(request)), "q": _param(request, "q"),
                "limit_hit": self.page_size == self.row_limit and more}  # fmt: skip

    def tasks(self, request: Request) -> Response:
        context = self._task_rows(request)
        cluster = context["where"].cluster
        context["names"] = queries.task_names(self.execute, self.db, cluster, self.row_limit)
        context["workers"] = queries.worker_names(self.execute, self.db, cluster, self.row_limit)
        context["live_url"] = "/tasks/rows?" + query_string(context["params"], before=request.query_params.get("before"))
        context["control_fields"] = [(k, v) for k in ("cluster", "state", "name", "worker", "uuid", "window", "q")
                                     for v in context["params"][k] if v]  # fmt: skip
        return self.page(request, "tasks.html", **context)

    def task_rows(self, request: Request) -> Response:
        return self.render(request, "_task_rows.html", **self._task_rows(request))

    # one task -----------------------------------------------------------------
    def _task(self, request: Request) -> dict:
        uuid = _param(request, "uuid")
        cluster = _param(request, "cluster")
        if not uuid:
            raise BadRequest("parameter 'uuid' is required")
        found = queries.task(self.execute, self.db, cluster, uuid)
        if not found:
            return {"record": None, "uuid": uuid, "choices": []}
        if len(found) > 1:
            return {"record": None, "uuid": uuid, "choices": found}
        record = found[0]
        cluster = record["cluster"]
        events = queries.task_events(self.execute, self.db, cluster, uuid, self.row_limit + 1)
        events_cut = len(events) > self.row_limit
        bodies = []
        for row in events[: self.row_limit]:
            try:
                body = orjson.loads(row["body"])
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                body = {}
            body = {**body, "type": row["type"], "hostname": row["hostname"], "pid": row["pid"], "clock": row["clock"],
                    "timestamp": row["timestamp"], "_received_at": row["received_at"]}  # fmt: skip
            bodies.append(body)
        groups = attempts_mod.group_attempts(bodies)
        root = record.get("root_id") or uuid
        nodes = queries.workflow(self.execute, self.db, self.columns("tasks"), cluster, root, self.row_limit + 1)
        graph_cut = len(nodes) > self.row_limit
        graph = workflow.layout(nodes[: self.row_limit], uuid) if len(nodes) > 1 else None
        span = (min((e["timestamp"] for e in bodies), default=0.0), max((e["timestamp"] for e in bodies), default=0.0))
        return {"record": record, "uuid": uuid, "cluster": cluster, "attempts": groups, "events_count": len(bodies),
                "events_cut": events_cut, "graph": graph, "graph_cut": graph_cut, "span": span,
                "live": record["state"] not in S.FINAL_STATES}  # fmt: skip

    def task(self, request: Request) -> Response:
        context = self._task(request)
        record = context["record"]
        context["audit"] = (queries.audit_of_task(self.execute, self.db, record["cluster"], record["uuid"], self.row_limit)
                            if record is not None and self.columns("audit") else [])  # fmt: skip
        status = 200 if context["record"] is not None or context["choices"] else 404
        response = self.page(request, "task.html", **context)
        response.status_code = status
        return response

    def task_live(self, request: Request) -> Response:
        return self.render(request, "_task_body.html", **self._task(request))

    # failure groups ------------------------------------------------------------
    def failure_groups(self, request: Request) -> tuple[list[dict], bool, float]:
        """The groups the page's (or API's) filters ask for: cluster, name (part or glob), window (s)."""
        now = time.time()
        window = _number(request, "window")
        name = _param(request, "name")
        terms = (search.Term("name", name),) if name else ()
        rows = queries.failure_groups(self.execute, self.db, _param(request, "cluster"), terms, now - window if window else 0.0,
                                      now, self.row_limit + 1)  # fmt: skip
        for row in rows:
            row["search"] = queries.failure_group_search(row)
        return rows[: self.row_limit], len(rows) > self.row_limit, window or 86400.0

    def failures(self, request: Request) -> Response:
        groups, cut, span = self.failure_groups(request)
        for g in groups:
            g["spark"] = sparkline(g["trend"])
        names = queries.task_names(self.execute, self.db, _param(request, "cluster"), self.row_limit)
        return self.page(request, "failures.html", groups=groups, limit_hit=cut, names=names, name=_param(request, "name"),
                         window=request.query_params.get("window", ""), trend_span=fmt_duration(span))  # fmt: skip

    # task control -------------------------------------------------------------
    def audit(self, request: Request) -> Response:
        """Control requests, newest first; ?request_id= one request with its tasks."""
        request_id = _param(request, "request_id")
        present = bool(self.columns("audit"))
        rows = queries.audit_requests(self.execute, self.db, self.row_limit, request_id, _param(request, "user")) if present else []
        tasks = queries.audit_tasks(self.execute, self.db, request_id, self.row_limit) if present and request_id else []
        return self.page(request, "audit.html", requests=rows, tasks=tasks, request_id=request_id, present=present)

    def control_request(self, request: Request, form) -> Response:
        """POST /control (htmx): a dry run or a real run of an action on the form's selection."""
        identity = request.scope.get("auth", ANONYMOUS)
        if not self.control.enabled:
            raise Forbidden("task control is off (CONTROL_URL / CONTROL_SECRET)")
        if not identity.operator:
            raise Forbidden(f"{identity.user} is a {identity.role}: task control needs the operator role")
        selection = form_selection(form)
        action = form.get("action", "")
        dry_run = form.get("dry_run", "1") != "0"
        options = {k: form.get(k) for k in ("signal", "queue") if form.get(k)}
        try:
            status, answer = self.control.act(identity.user, identity.role, action, dry_run, selection, options, via=identity.via)
        except ControlUnavailable as exc:
            raise ControlDown(str(exc)) from None
        if status == 401:
            raise ControlDown(f"celery-monitor control refused the UI's signature: {answer.get('error')} (CONTROL_SECRET must be the same on both)")
        # The confirm button acts on the tasks this dry run found eligible (and still matching the
        # filter), never on whatever the filter selects by the time it is pressed.
        keep = {k: v for k, v in selection.items() if k != "uuids"}
        if status == 200 and answer.get("dry_run"):
            keep["uuids"] = answer.get("eligible_uuids") or []
        hidden = [(k, v) for k, values in keep.items() for v in (values if isinstance(values, list) else [values])]
        hidden += [("action", action)] + [(k, v) for k, v in options.items()]
        return self.render(request, "_control_result.html", status=200 if status == 200 else status, result=answer,
                           ok=status == 200, hidden=hidden, action=action)  # fmt: skip

    # workers ------------------------------------------------------------------
    def _workers(self, request: Request) -> dict:
        cluster = _param(request, "cluster")
        rows = queries.workers(self.execute, self.db, self.columns("workers"), cluster, self.row_limit + 1)
        return {"workers": rows[: self.row_limit], "limit_hit": len(rows) > self.row_limit}

    def workers(self, request: Request) -> Response:
        context = self._workers(request)
        context["live_url"] = "/workers/rows?" + query_string({"cluster": _param(request, "cluster")})
        return self.page(request, "workers.html", **context)

    def worker_rows(self, request: Request) -> Response:
        return self.render(request, "_worker_rows.html", **self._workers(request))

    # analytics ----------------------------------------------------------------
    def _analytics_params(self, request: Request) -> dict:
        window = _number(request, "window")
        return {"cluster": _param(request, "cluster"), "name": _param(request, "name"), "since": time.time() - window if window else 0}

    def analytics(self, request: Request) -> Response:
        """The page and one placeholder per chart; each chart is its own request (/analytics/panel),
        so the page shows at once and the charts' queries run side by side."""
        params = self._analytics_params(request)
        query = query_string({"cluster": params["cluster"], "name": params["name"], "window": request.query_params.get("window", "")})
        panels = [{"id": chart_id, "heading": heading, "url": f"/analytics/panel?{query_string({'chart': chart_id})}&{query}"}
                  for chart_id, heading, _ in charts.CHARTS.values()]  # fmt: skip
        names = queries.task_names(self.execute, self.db, params["cluster"], self.row_limit)
        return self.page(request, "analytics.html", panels=panels, names=names, name=params["name"],
                         window=request.query_params.get("window", ""))  # fmt: skip

    def analytics_panel(self, request: Request) -> Response:
        chart_id = _param(request, "chart")
        found = [(name, heading, build) for name, (cid, heading, build) in charts.CHARTS.items() if cid == chart_id]
        if not found:
            raise BadRequest(f"no chart {chart_id[:50]!r}; charts: {', '.join(c for c, _, _ in charts.CHARTS.values())}")
        name, heading, build = found[0]
        query = load_query(name, self.db)
        columns, rows = self.execute(_capped(query.sql, self.row_limit + 1), self._analytics_params(request))
        cut, newest = len(rows) > self.row_limit, bool(TIME_SERIES.search(query.sql))
        rows = rows[: self.row_limit]
        if newest:
            rows.reverse()  # the newest minutes were taken; a chart reads them oldest first
        answer = Answer(query, columns, rows)
        panel = {"id": chart_id, "heading": heading, "title": query.title, "spec": build(answer), "columns": columns,
                 "rows": answer.rows, "cut": cut, "newest": newest}  # fmt: skip
        return self.render(request, "_panel.html", p=panel)


def vendor(request: Request) -> Response:
    path = VENDOR.get(request.path_params["name"])
    if path is None or not (NODE_MODULES / path).is_file():
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(NODE_MODULES / path, headers={"Cache-Control": "public, max-age=86400"})


class Guard:
    """ASGI middleware: optional authentication (auth.py: UI_USERS_FILE, UI_BASIC_AUTH, UI_TOKEN),
    security headers, Server-Timing.

    The caller's :class:`auth.Identity` (user and role) goes in ``scope["auth"]`` for the handlers.
    With no credentials configured every request is an anonymous viewer (the server then refuses to
    bind anything but loopback: ``server.check_bind``); ``/healthz`` always passes (it says "ok").
    ``Server-Timing: app;dur=<ms>`` is the server's time for the request (make bench-ui reads it)."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.auth = Authenticator.from_settings(settings)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        # /healthz answers without credentials (a container's or balancer's probe has none; it says only "ok")
        healthz = scope.get("path") == "/healthz"
        header = headers.get(b"authorization", b"").decode("latin-1")
        identity = ANONYMOUS if healthz else self.auth.cached(header)
        client = (scope.get("client") or ("?", 0))[0]
        if identity is None:
            wait = self.auth.blocked(client)
            if wait > 0:
                await send({"type": "http.response.start", "status": 429,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", str(int(wait) + 1).encode())]})  # fmt: skip
                await send({"type": "http.response.body", "body": b"too many failed sign-ins from this address: wait and try again\n"})
                return
            from starlette.concurrency import run_in_threadpool

            identity = await run_in_threadpool(self.auth.identify, header)  # PBKDF2 off the event loop
            if identity is None and header:
                self.auth.failed(client)
        scope = {**scope, "auth": identity or ANONYMOUS}
        if not healthz and identity is None:
            challenge = [(b"www-authenticate", b'Basic realm="celery-monitor", charset="UTF-8"')] if self.auth.basic_offered else []
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *challenge]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"authentication required (UI_USERS_FILE / UI_BASIC_AUTH / UI_TOKEN)\n"})
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, execute=None) -> Guard:
    """The ASGI app. ``execute(sql, params) -> (columns, rows)`` replaces the ClickHouse pool (tests)."""
    ui = UI(settings, execute)

    def handler(method):
        def endpoint(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
            fragment = request.headers.get("hx-request") == "true"
            try:
                return method(request)
            except BadRequest as exc:
                return ui.render(request, "error.html", status=400, title="Bad request", message=str(exc), fragment=fragment)
            except QueryTimeout as exc:
                return ui.render(request, "error.html", status=504, title="Query timeout", message=str(exc), fragment=fragment)
            except ClickHouseDown as exc:
                return ui.render(request, "error.html", status=503, title="ClickHouse unavailable", message=str(exc), fragment=fragment)
            except TooManyRows as exc:
                return ui.render(request, "error.html", status=422, title="Too many rows", message=str(exc), fragment=fragment)

        return endpoint

    async def control_endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        def refuse(status: int, title: str, message: str) -> Response:
            return ui.render(request, "error.html", status=status, title=title, message=message, fragment=True)

        if not same_origin(request):
            return refuse(403, "Refused", "a control request must come from this UI's own page (htmx) or be JSON")
        identity = request.scope.get("auth", ANONYMOUS)
        if not (ui.control.enabled and identity.operator):
            return refuse(403, "Not allowed", "task control is off" if not ui.control.enabled else
                          f"{identity.user} is a {identity.role}: task control needs the operator role")  # fmt: skip
        form = await request.form()
        try:
            return await run_in_threadpool(ui.control_request, request, form)
        except BadRequest as exc:
            return refuse(400, "Bad request", str(exc))
        except Forbidden as exc:
            return refuse(403, "Not allowed", str(exc))
        except ControlDown as exc:
            return refuse(503, "Task control unavailable", str(exc))

    routes = [
        Route("/", lambda request: RedirectResponse("/tasks" + (f"?{request.url.query}" if request.url.query else ""))),
        Route("/tasks", handler(ui.tasks)),
        Route("/tasks/rows", handler(ui.task_rows)),
        Route("/task", handler(ui.task)),
        Route("/task/live", handler(ui.task_live)),
        Route("/failures", handler(ui.failures)),
        Route("/workers", handler(ui.workers)),
        Route("/workers/rows", handler(ui.worker_rows)),
        Route("/analytics", handler(ui.analytics)),
        Route("/analytics/panel", handler(ui.analytics_panel)),
        Route("/audit", handler(ui.audit)),
        Route("/control", control_endpoint, methods=["POST"]),
        *api.routes(ui),
        Route("/healthz", lambda request: PlainTextResponse("ok\n")),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/vendor/{name}", vendor),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if ui.pool:
            ui.pool.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ui = ui
    return Guard(app, settings)
