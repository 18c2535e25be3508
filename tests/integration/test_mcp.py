"""`celery-monitor mcp` driven by the official SDK's client over stdio and Streamable HTTP, on the
ClickHouse 18.16 server (the UI tests' data, loaded by test_ui_queries_both_servers's fixture);
over HTTP with the UI's auth."""

from __future__ import annotations

import sys
import time

import anyio
import httpx2

from devstack.pipeline import Proc, settings_env
from devstack.services import free_port, port_open
from tests.integration.test_ui_queries_both_servers import DB, both  # noqa: F401 (the fixture)
from tests.ui_data import SEARCH_UUIDS


async def ask(client) -> dict:
    tools = {t.name for t in (await client.list_tools()).tools}
    found = await client.call_tool("search_tasks", {"search": "kwargs:customer=1234"})
    groups = await client.call_tool("failure_groups", {"name": "group.*"})
    answer = await client.call_tool("run_question", {"question": "failure_groups"})
    bad = await client.call_tool("search_tasks", {"search": "state:DONE"})
    return {"tools": tools, "found": [t["uuid"] for t in found.structured_content["tasks"]],
            "groups": sorted(g["fingerprint"] for g in groups.structured_content["groups"]),
            "question_rows": len(answer.structured_content["rows"]), "bad": bad.content[0].text if bad.is_error else None}  # fmt: skip


def check(result: dict) -> None:
    assert {"search_tasks", "get_task", "failure_groups", "workers", "queue_lengths", "list_questions", "run_question"} <= result["tools"]
    assert result["found"] == [SEARCH_UUIDS[0]]
    assert result["groups"] == ["KeyError('account <n>')", "KeyError('user <n>')", "TimeoutError('after <n>s to <ip>')"]
    assert result["question_rows"] >= 3
    assert "DONE is not a task state" in result["bad"]


def test_stdio(both):  # noqa: F811
    from mcp import Client, StdioServerParameters

    _, _, settings = both
    params = StdioServerParameters(command=sys.executable, args=["-m", "streams", "mcp"], env=settings_env(settings))

    async def main():
        async with Client(params) as client:
            return await ask(client)

    check(anyio.run(main))


def test_http_with_the_uis_auth(both, tmp_path):  # noqa: F811
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    _, _, settings = both
    port = free_port()
    env = {**settings_env(settings), "UI_TOKEN": "tok-123", "MCP_PORT": str(port)}
    proc = Proc("mcp", [sys.executable, "-m", "streams", "mcp", "--transport", "http"], env, tmp_path / "mcp.log").start()
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert proc.alive() and time.monotonic() < deadline, proc.tail()
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        assert httpx2.post(url, json={}).status_code == 401  # no token, no tools

        async def main():
            async with httpx2.AsyncClient(headers={"Authorization": "Bearer tok-123"}, timeout=30) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    return await ask(client)

        check(anyio.run(main))
    finally:
        proc.stop()
