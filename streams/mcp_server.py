"""`celery-monitor mcp`: read-only access for agents over the Model Context Protocol (the official
`mcp` SDK), on stdio or Streamable HTTP (docs/mcp.md).

Each tool is one of the HTTP API's endpoints (streams/ui/api.py) called in-process: the same
queries, parameters, row and time limits (UI_ROW_LIMIT, UI_QUERY_TIMEOUT, a read-only ClickHouse
user setting) and, over HTTP, the same auth (the UI's ``Guard``: UI_BASIC_AUTH / UI_TOKEN, and
no address but loopback without one). Nothing writes.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
from starlette.requests import Request

from streams.config import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Read-only access to a Celery monitor: every task's record and attempts, failure groups, workers, queue lengths and "
    "analytics questions, from ClickHouse. Task states are Leek's (QUEUED RECEIVED STARTED SUCCEEDED FAILED RETRY REJECTED "
    "REVOKED RECOVERED CRITICAL). Search syntax: words are searched in name, args, kwargs, result, exception, traceback; "
    "qualifiers name: args: kwargs:key=value result: exception: traceback: state:A,B worker: uuid:; -term negates."
)


def _tool_error_base():
    from mcp.server.mcpserver.exceptions import ToolError as SdkToolError

    return SdkToolError


class ToolError(_tool_error_base()):
    """A tool's request was refused (bad parameter, unknown task, timeout): the message, which the
    agent sees, says why."""


def build(settings: Settings, execute=None):
    """The MCP server with its tools, over the UI's ClickHouse pool (or ``execute`` in tests)."""
    from mcp.server.mcpserver import MCPServer

    from streams.cli import package_version
    from streams.report import DEFAULT_QUERIES, load_query

    from .ui.api import Api, ApiError
    from .ui.app import UI, _capped
    from .ui.db import ClickHouseDown, QueryTimeout, TooManyRows

    ui = UI(settings, execute)
    api = Api(ui)
    server = MCPServer(name="celery-monitor", instructions=INSTRUCTIONS, version=package_version())

    def call(method, path_params: dict | None = None, **params) -> Any:
        pairs = []
        for key, value in params.items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item not in (None, "", 0, 0.0):
                    pairs.append((key, str(item)))
        scope = {"type": "http", "method": "GET", "path": "/", "query_string": urlencode(pairs).encode(), "headers": [],
                 "path_params": path_params or {}}  # fmt: skip
        try:
            response = method(Request(scope))
        except (ApiError, QueryTimeout, ClickHouseDown, TooManyRows) as exc:
            raise ToolError(str(exc)) from None
        data = orjson.loads(response.body)
        if response.status_code != 200:
            raise ToolError(data.get("error", f"HTTP {response.status_code}"))
        return data

    async def threaded(func, *args, **kwargs):
        return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))

    @server.tool(structured_output=True, description="Find tasks, newest first: a search text (see the instructions) and/or filters. Returns "
                             "{tasks: [...], next_before}; pass next_before back as `before` for the next page.")  # fmt: skip
    async def search_tasks(search: str = "", cluster: str = "", name: str = "", states: list[str] | None = None,
                           worker: str = "", window_seconds: float = 0, limit: int = 20, before: str = "") -> dict[str, Any]:  # fmt: skip
        return await threaded(call, api.native_tasks, q=search, cluster=cluster, name=name, state=states or [], worker=worker,
                              window=window_seconds, limit=limit, before=before)  # fmt: skip

    @server.tool(structured_output=True, description="One task: its whole record, its state badge with tags, every attempt (worker, waits, runtime, "
                             "raw events) and its workflow (chain/group members).")  # fmt: skip
    async def get_task(uuid: str, cluster: str = "") -> dict[str, Any]:
        return await threaded(call, api.native_task, {"uuid": uuid}, cluster=cluster)

    @server.tool(structured_output=True, description="Failed and critical tasks grouped by cluster, task name, exception type and message fingerprint "
                             "(numbers, ids, addresses masked): count, first/last failure, workers, latest traceback, trend, "
                             "and the search text that lists the group's tasks.")  # fmt: skip
    async def failure_groups(cluster: str = "", name: str = "", window_seconds: float = 0, limit: int = 20) -> dict[str, Any]:
        return await threaded(call, api.failure_groups, cluster=cluster, name=name, window=window_seconds, limit=limit)

    @server.tool(structured_output=True, description="Workers: state (ONLINE/HEARTBEAT/OFFLINE with the reason), last heartbeat, active, processed, clock skew.")
    async def workers(cluster: str = "") -> dict[str, Any]:
        return await threaded(call, api.native_workers, cluster=cluster)

    @server.tool(structured_output=True, description="The newest sampled length of every Celery task queue.")
    async def queue_lengths(cluster: str = "") -> dict[str, Any]:
        return await threaded(call, api.queue_lengths, cluster=cluster)

    @server.tool(structured_output=True, description="The analytics questions run_question can answer: name, title and what each asks.")
    async def list_questions() -> dict[str, Any]:
        out = []
        for name in DEFAULT_QUERIES:
            query = load_query(name, ui.db)
            out.append({"name": name, "title": query.title})
        return {"questions": out}

    @server.tool(structured_output=True, description="Answer one named analytics question (see list_questions) for a cluster, a task name "
                             "and the last window_seconds (0 = all time). Returns its columns and rows (at most UI_ROW_LIMIT).")  # fmt: skip
    async def run_question(question: str, cluster: str = "", task_name: str = "", window_seconds: float = 0) -> dict[str, Any]:
        import time

        if question not in DEFAULT_QUERIES:
            raise ToolError(f"no question {question[:80]!r}; questions: {', '.join(DEFAULT_QUERIES)}")
        if window_seconds < 0:
            raise ToolError("window_seconds must be >= 0")
        query = load_query(question, ui.db)
        params = {"cluster": cluster, "name": task_name, "since": time.time() - window_seconds if window_seconds else 0}

        def run():
            try:
                return ui.execute(_capped(query.sql, ui.row_limit + 1), params)
            except (QueryTimeout, ClickHouseDown, TooManyRows) as exc:
                raise ToolError(str(exc)) from None

        columns, rows = await threaded(run)
        cut = len(rows) > ui.row_limit
        rows = [[_plain(v) for v in row] for row in rows[: ui.row_limit]]
        return {"question": question, "title": query.title, "columns": columns, "rows": rows, "cut": cut}

    server.celery_monitor_ui = ui
    return server


def _plain(value):
    """A ClickHouse value as JSON text/number (dates and decimals as strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def serve_http(settings: Settings) -> None:
    """Streamable HTTP on UI_HOST:MCP_PORT at /mcp, behind the UI's auth."""
    import uvicorn

    from .listen import SettingError, listen
    from .ui.app import Guard
    from .ui.server import UIConfigError, check_bind

    check_bind(settings)
    server = build(settings)
    app = Guard(server.streamable_http_app(host=settings.ui_host), settings)
    try:
        sock = listen(settings.mcp_port, "mcp_port", backlog=128, host=settings.ui_host)
    except SettingError as exc:
        raise UIConfigError(str(exc)) from None
    if sock is None:
        raise UIConfigError("MCP_PORT=off: no port to serve Streamable HTTP on")
    log.info("MCP (Streamable HTTP) on http://%s:%s/mcp", settings.ui_host, settings.mcp_port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def serve_stdio(settings: Settings) -> None:
    build(settings).run("stdio")
