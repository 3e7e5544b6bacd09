"""MCP servers' tools in the agent graph, with real parts: an MCP server over stdio running inside
a Docker workspace (through its sandbox actor), one over streamable HTTP on the host (both
written with the ``mcp`` SDK, tests/actors/mcp/), the scripted model calling their tools, and
failing servers reported as tool errors and as events on the fabric's event bus."""

from __future__ import annotations

import importlib.metadata
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest
import ray
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from actors.workspaces import BusEventReporter
from quadracode_ray.config import Settings
from quadracode_ray.envelope import EnvelopeFilter
from quadracode_ray.llm import make_chat_model
from quadracode_ray.llm.scripted.server import ScriptedServer
from tests.actors.conftest import eventually
from tests.actors.mcp.http_server import HttpMcpServer
from tests.conftest import free_port

pytestmark = pytest.mark.docker
TOKEN = f"secret-{uuid.uuid4().hex}"
HERE = Path(__file__).parent
FAILED = "mcp_server_failed"


def _mcp_library_tar() -> bytes:
    """The ``mcp`` package and what it needs (extras named by its requirements included), from
    this environment, for the container's python3 (the same 3.11): it has no network to install
    from."""
    wanted, seen = [("mcp", frozenset())], set()
    with io.BytesIO() as buffer:
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            while wanted:
                name, extras = wanted.pop()
                try:
                    dist = importlib.metadata.distribution(name)
                except importlib.metadata.PackageNotFoundError:
                    continue  # a dependency for another platform (pywin32, ...)
                for raw in dist.requires or []:
                    requirement = Requirement(raw)
                    if requirement.marker is None or any(
                            requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                        wanted.append((requirement.name, frozenset(requirement.extras)))
                key = canonicalize_name(dist.metadata["Name"])
                if key in seen:
                    continue
                seen.add(key)
                for file in dist.files or []:
                    path = Path(file.locate())
                    if path.is_file() and ".." not in file.parts and "__pycache__" not in file.parts:
                        tar.add(path, arcname=str(file))
        return buffer.getvalue()


@pytest.fixture(scope="module")
def http_mcp() -> HttpMcpServer:
    server = HttpMcpServer(free_port(), TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model_server() -> ScriptedServer:
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def workspace(system, fabric_settings: Settings):
    """A Docker workspace (its sandbox actor) holding the stdio server and the mcp library."""
    from sandbox.client import get_workspace
    from sandbox.testing import remove_installation

    installation = f"t{uuid.uuid4().hex[:10]}"
    settings = fabric_settings.model_copy(update={
        "sandbox_installation_id": installation, "sandbox_memory_mb": 512, "sandbox_pids_limit": 256,
        "sandbox_disk_quota_mb": 256, "sandbox_idle_stop_s": 0})
    client = await get_workspace(f"mcp-{uuid.uuid4().hex[:6]}", settings, detached=False)
    await client.upload_tar(_mcp_library_tar(), "pylib")
    await client.write_file("server.py", (HERE / "mcp" / "stdio_server.py").read_text())
    await client.write_file("notes.txt", "one\ntwo\nthree\n")
    yield client
    await client.destroy(remove_volume=True)
    ray.kill(client.handle, no_restart=True)
    remove_installation(installation)


@pytest.fixture
def agent(model_server, monkeypatch):
    """agent(servers, workspace, events) -> the agent graph of an assistant naming those MCP servers."""
    from quadracode_ray.graphs.agent import graph

    monkeypatch.setenv("QUADRACODE_MCP_HEADERS", json.dumps({"search": {"Authorization": f"Bearer {TOKEN}"},
                                                              "wrong": {"Authorization": f"Bearer x{TOKEN}"}}))
    settings = Settings(_env_file=None, scripted_server_url=model_server.url)

    def make(servers: dict, workspace, events=None):
        return graph({"configurable": {"model": make_chat_model(f"scripted:mcp-{uuid.uuid4().hex[:6]}", settings),
                                       "workspace": workspace, "events": events, "mcp_servers": servers}})

    return make


async def _run(graph, task: str, thread_id: str) -> tuple[dict, list[dict]]:
    """The graph's final state and its custom stream events."""
    custom, values = [], None
    async for mode, chunk in graph.astream({"task": task, "task_id": thread_id},
                                           {"configurable": {"thread_id": thread_id}},
                                           stream_mode=["values", "custom"]):
        if mode == "custom":
            custom.append(chunk)
        else:
            values = chunk
    return values, custom


STDIO = {"transport": "stdio", "command": ["python3", "server.py"], "env": {"PYTHONPATH": "/workspace/pylib"},
         "timeout_s": 120}


async def test_the_agent_calls_the_tools_of_an_http_server_and_a_stdio_server_in_its_workspace(
        agent, workspace, http_mcp) -> None:
    graph = agent({"search": {"transport": "http", "url": http_mcp.url, "headers": "search"}, "files": STDIO},
                  workspace)
    state, custom = await _run(graph, 'call tool search__lookup with {"term": "Ray"}', "t-http")
    assert state["result"] == {**state["result"], "status": "succeeded", "output": "a distributed runtime"}
    assert [e["name"] for e in custom if e.get("event") == "tool_start"] == ["search__lookup"]

    state, _ = await _run(graph, 'call tool files__count_lines with {"path": "notes.txt"}', "t-stdio")
    # The server ran inside the workspace: /workspace as its folder, the sandbox user's uid.
    assert state["result"]["status"] == "succeeded"
    assert state["result"]["output"] == "notes.txt has 3 lines (seen from /workspace as uid 1000)"
    assert not await workspace.list_processes()  # nothing left running in the workspace
    assert "python3 server.py" not in (await workspace.exec("ps -eo args")).stdout


async def test_failing_servers_are_tool_errors_the_model_sees_and_events_on_the_bus(
        agent, workspace, http_mcp, system, fabric_settings) -> None:
    thread = f"t-{uuid.uuid4().hex[:8]}"
    servers = {"broken": {"transport": "stdio", "command": ["python3", "-c", "import sys; sys.exit('boom at start')"]},
               "files": STDIO,
               "locked": {"transport": "http", "url": http_mcp.url, "headers": "wrong", "timeout_s": 20},
               "offline": {"transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp", "timeout_s": 20}}
    graph = agent(servers, workspace, BusEventReporter(fabric_settings, "agent"))

    state, custom = await _run(graph, "call tool broken__unavailable", thread)
    assert state["result"]["status"] == "failed"
    assert "boom at start" in state["result"]["output"]  # the server's stderr, as the model saw it
    failed = {e["server"]: e for e in custom if e.get("event") == FAILED}
    assert set(failed) == {"broken", "locked", "offline"}  # files answered
    assert all(e["stage"] == "list_tools" for e in failed.values())

    state, custom = await _run(graph, "call tool files__crash", thread)  # a server that dies mid-call
    assert state["result"]["status"] == "failed"
    assert "failed during crash" in state["result"]["output"]
    assert [e["stage"] for e in custom if e.get("event") == FAILED and e["server"] == "files"] == ["call_tool"]

    async def on_the_bus():
        logged = await system.events.query.remote(EnvelopeFilter(kind=FAILED, thread_id=thread), limit=50)
        return logged if {e.envelope.payload["server"] for e in logged} >= {"broken", "locked", "offline", "files"} \
            else None

    logged = await eventually(on_the_bus, timeout=30, what="the MCP failures on the event bus")
    everything = json.dumps([e.envelope.model_dump(mode="json") for e in logged]) + json.dumps(
        [m.content for m in state["messages"]], default=str)
    assert TOKEN not in everything  # the headers' values are never echoed
