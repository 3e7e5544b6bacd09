"""MCP tools in delegated tasks, end to end: an assistant of the orchestrator graph names MCP
servers (one over streamable HTTP on the host, wanting a bearer token from the settings; one over
stdio, run inside the `default` workspace) and a prompt for its agents; an API run of it delegates
to an agent actor, whose agent graph, built from the config the task carried, calls the servers'
tools through the scripted model; the results come back to the thread as its later runs.

The whole fabric (real graphs, the scripted model, a real Docker sandbox), the Serve app beside
it, reached with the official langgraph-sdk client; the MCP servers are the tests' own
(tests/actors/mcp/, written with the ``mcp`` SDK).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from sandbox.client import get_workspace
from tests.actors.mcp.http_server import HttpMcpServer
from tests.actors.test_mcp_tools import STDIO, _mcp_library_tar
from tests.conftest import free_port
from tests.e2e.conftest import eventually, message_texts, serve_app_beside

APP = "qr-mcp-tasks"
TOKEN = f"secret-{uuid.uuid4().hex}"
MCP_DIR = Path(__file__).parents[1] / "actors" / "mcp"
E2E_SETTINGS = {"mcp_headers": json.dumps({"search": {"Authorization": f"Bearer {TOKEN}"}})}
AGENT_PROMPT = "You are a librarian agent: answer from the tools."


@pytest.fixture(scope="module")
def http_mcp() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(free_port(), TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(system, serve_http_port: int) -> Iterator[str]:
    with serve_app_beside(system.settings, serve_http_port, APP) as url:
        yield url


@pytest.fixture
def client(api: str):
    from langgraph_sdk import get_client

    return get_client(url=api, timeout=120)


async def _task_row(database_url: str, task_id: str) -> dict:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        return await (await conn.execute("SELECT * FROM qr_tasks WHERE task_id = %s", (task_id,))).fetchone()


async def _delegate(client, assistant_id: str, instruction: str) -> tuple[str, str]:
    """Delegate over the API; the folded task result, once its run has finished, and the task id."""
    thread_id = (await client.threads.create())["thread_id"]
    values = await client.runs.wait(thread_id, assistant_id,
                                    input={"messages": [{"role": "user", "content": f"delegate to a coder agent: "
                                                                                    f"{instruction}"}]})
    match = re.search(r"as task (\S+?)\.", message_texts(values, type_="ai")[-1])
    assert match, values
    task_id = match.group(1)

    async def folded():
        for run in await client.runs.list(thread_id):
            if (run["metadata"] or {}).get("source") == "agent_result" and run["status"] == "success":
                state = await client.threads.get_state(thread_id)
                return message_texts(state["values"], name="task_result")
        return None

    (text,) = await eventually(folded, timeout=180, what="the task's result folded into the thread")
    return text, task_id


async def test_a_delegated_task_gets_the_assistants_mcp_tools_and_agent_prompt(system, client, http_mcp):
    workspace = await get_workspace("default", system.settings)
    await workspace.upload_tar(_mcp_library_tar(), "pylib")
    await workspace.write_file("server.py", (MCP_DIR / "stdio_server.py").read_text())
    await workspace.write_file("notes.txt", "one\ntwo\nthree\n")
    assistant = await client.assistants.create("orchestrator", config={"configurable": {
        "mcp_servers": {"search": {"transport": "http", "url": http_mcp.url, "headers": "search"}, "files": STDIO},
        "agents": {"system_prompt": AGENT_PROMPT}}})

    text, task_id = await _delegate(client, assistant["assistant_id"], 'call tool search__lookup with {"term": "Ray"}')
    assert re.match(rf"\[task {task_id} succeeded by agent \S+\]\na distributed runtime$", text), text
    row = await _task_row(system.settings.database_url, task_id)
    carried = row["metadata"]["assistant_config"]
    assert carried["system_prompt"] == AGENT_PROMPT and set(carried["mcp_servers"]) == {"search", "files"}
    assert TOKEN not in json.dumps(row, default=str)  # the config names the headers; their values stay in settings

    # The stdio server runs in the agent's workspace, as the sandbox's user, and is gone after the call.
    text, task_id = await _delegate(client, assistant["assistant_id"],
                                    'call tool files__count_lines with {"path": "notes.txt"}')
    assert text.endswith("\nnotes.txt has 3 lines (seen from /workspace as uid 1000)"), text
    assert "python3 server.py" not in (await workspace.exec("ps -eo args")).stdout



async def test_the_default_assistant_delegates_as_before_without_mcp_tools(system, client):
    text, task_id = await _delegate(client, "orchestrator", 'call tool search__lookup with {"term": "Ray"}')
    # No config carried: the agent has no such tool, and says so in a failed (or answered) task.
    row = await _task_row(system.settings.database_url, task_id)
    assert "assistant_config" not in row["metadata"]
    assert "a distributed runtime" not in text
