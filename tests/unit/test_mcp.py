"""The MCP server's tools through the SDK's own client, in-process, on chdb (modern ClickHouse);
tests/integration/test_mcp.py drives `celery-monitor mcp` over stdio and HTTP on the 18.16 server."""

from __future__ import annotations

import anyio
import pytest

from streams.config import Settings
from streams.migrate import migrate
from tests.sqlkit import Chdb, insert_sql
from tests.ui_data import CLUSTER, SEARCH_UUIDS, ui_dataset

TOOLS = {"search_tasks", "get_task", "failure_groups", "workers", "queue_lengths", "list_questions", "run_question"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, scenario_events):
    from streams.mcp_server import build

    ch = Chdb(str(tmp_path_factory.mktemp("chdb-mcp")))
    migrate(ch.execute, "celery")
    tables, _ = ui_dataset(scenario_events)
    for table, (columns, rows) in tables.items():
        ch.execute(insert_sql("celery", table, columns, rows))
    yield build(Settings.load(environ={}, ui_row_limit=500), execute=ch.query)
    ch.close()


def session(server, calls):
    from mcp import Client

    async def main():
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            out = [tools]
            for name, args in calls:
                out.append(await client.call_tool(name, args))
            return out

    return anyio.run(main)


def test_tools_answer_as_the_api_does(server, scenario_ids):
    uuid = scenario_ids["recovered_retry"][0]
    tools, found, task, groups, workers, queues, questions, answer, bad, missing = session(server, [
        ("search_tasks", {"search": "kwargs:customer=1234"}),
        ("get_task", {"uuid": uuid}),
        ("failure_groups", {"name": "group.me"}),
        ("workers", {}),
        ("queue_lengths", {"cluster": CLUSTER}),
        ("list_questions", {}),
        ("run_question", {"question": "tasks_by_state", "cluster": CLUSTER}),
        ("search_tasks", {"search": '"open'}),
        ("get_task", {"uuid": "nope"}),
    ])  # fmt: skip
    assert tools == TOOLS
    assert [t["uuid"] for t in found.structured_content["tasks"]] == [SEARCH_UUIDS[0]]
    assert task.structured_content["badge"]["label"] == "RECOVERED after 2 retries" and len(task.structured_content["attempts"]) == 3
    assert {g["fingerprint"] for g in groups.structured_content["groups"]} == {"KeyError('user <n>')", "KeyError('account <n>')"}
    assert [w["state"] for w in workers.structured_content["workers"]] == ["OFFLINE", "HEARTBEAT"]
    assert {q["name"] for q in queues.structured_content["active_queues"]} == {"celery", "priority"}
    assert "failure_groups" in {q["name"] for q in questions.structured_content["questions"]}
    assert "state" in answer.structured_content["columns"]
    assert answer.structured_content["rows"] and not answer.structured_content["cut"]
    assert bad.is_error and "unterminated quote" in bad.content[0].text
    assert missing.is_error and "Unknown task 'nope'" in missing.content[0].text


def test_no_question_outside_the_list(server):
    _, answer = session(server, [("run_question", {"question": "../../etc/passwd"})])
    assert answer.is_error and "no question" in answer.content[0].text
