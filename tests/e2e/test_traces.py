"""Traces end to end, read back from a real OTLP receiver: Arize Phoenix, started by this module
on loopback ports of its own. The fabric exports to it (QUADRACODE_OTLP_ENDPOINT); a task the
orchestrator delegates to an agent actor, which works in the sandbox actor, and the run its
result starts are one trace across the four actors, each span carrying the ids it belongs to."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from actors.client import FabricClient
from tests.conftest import free_port
from tests.e2e.conftest import eventually, message_texts, sources, thread_runs

PHOENIX_PROJECT = Path(__file__).parent / "phoenix"  # its own locked environment (see its pyproject)
PHOENIX_PORT = free_port()
E2E_SETTINGS = {"otlp_endpoint": f"http://127.0.0.1:{PHOENIX_PORT}/v1/traces"}
INSTRUCTION = "delegate to a coder agent: write hello.py that prints 42 and run it"


def _uv() -> str:
    found = shutil.which("uv") or str(Path(__file__).parents[2] / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is needed to install the Phoenix receiver (scripts/dev installs it)"
    return found


def _phoenix_binary() -> Path:
    """Phoenix from tests/e2e/phoenix/uv.lock, installed on first use (uv's cache makes it quick)."""
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV")}
    subprocess.run([_uv(), "sync", "--frozen", "--quiet", "--project", str(PHOENIX_PROJECT), "--python",
                    sys.executable], env=env, check=True, timeout=900)
    return PHOENIX_PROJECT / ".venv" / "bin" / "phoenix"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``phoenix serve`` with its own SQLite folder, on loopback only, without telemetry."""
    binary = _phoenix_binary()
    folder = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(folder), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(PHOENIX_PORT), "PHOENIX_GRPC_PORT": str(free_port()),
           "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = (folder / "phoenix.log").open("wb")
    process = subprocess.Popen([str(binary), "serve"], env=env, cwd=folder,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{PHOENIX_PORT}"
    try:
        deadline = time.monotonic() + 300  # its first start migrates a fresh database: slow when loaded
        while True:
            assert process.poll() is None, (folder / "phoenix.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Phoenix did not start in 300 s"
            time.sleep(0.5)  # the poll's interval (Phoenix has no readiness event to wait on)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def _spans(phoenix: str) -> list[dict]:
    async with httpx.AsyncClient(timeout=30) as http:
        spans, cursor = [], None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"{phoenix}/v1/projects/default/spans", params=params)).json()
            spans += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return spans


def _named(spans: list[dict], name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name]


async def test_a_delegated_task_is_one_trace_across_the_actors(phoenix, system):
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())
    values = await client.run_and_wait(thread, INSTRUCTION, timeout_s=180)
    task_id = re.search(r"as task (\S+?)\.", message_texts(values, type_="ai")[-1]).group(1)

    async def both_runs():
        runs = await thread_runs(system.settings, thread)
        return runs if sources(runs) == [("user_message", "success"), ("agent_result", "success")] else None

    user_run, result_run = await eventually(both_runs, timeout=180, what="the task's result run to finish")

    async def whole_trace():
        spans = await _spans(phoenix)
        runs = [s for s in _named(spans, "run") if s["attributes"].get("thread.id") == thread]
        if len(runs) < 2:
            return None
        trace = [s for s in spans if s["context"]["trace_id"] == runs[0]["context"]["trace_id"]]
        names = {s["name"] for s in trace}
        wanted = {"run", "model_call", "tool_call delegate", "agent_task", "tool_call write_file",
                  "tool_call exec", "sandbox write_file", "sandbox exec"}
        return trace if wanted <= names and len(_named(trace, "run")) == 2 else None

    trace = await eventually(whole_trace, timeout=120, what="the delegated task's spans in Phoenix, one trace")
    by_id = {s["context"]["span_id"]: s for s in trace}

    def parent(span: dict) -> dict:
        return by_id[span["parent_id"]]

    # The user's run is the root; the task hangs under its delegate call; the result's run under the task.
    runs = {s["attributes"]["run.id"]: s for s in _named(trace, "run")}
    assert set(runs) == {str(user_run["run_id"]), str(result_run["run_id"])}
    root = runs[str(user_run["run_id"])]
    assert root["parent_id"] is None
    (delegate,) = _named(trace, "tool_call delegate")
    (task,) = _named(trace, "agent_task")
    assert parent(task) is delegate and parent(delegate)["name"] == "run"
    assert parent(runs[str(result_run["run_id"])]) is task

    # Every span carries the ids it belongs to; the agent's and the sandbox's name the task too.
    agent_id = task["attributes"]["agent.id"]
    assert task["attributes"]["task.id"] == task_id and task["attributes"]["workspace.id"] == "default"
    for span in trace:
        assert span["attributes"]["thread.id"] == thread, span
        assert span["attributes"].get("run.id") in runs, span
        assert span["attributes"].get("agent.id"), span
    sandbox = [s for s in trace if s["name"].startswith("sandbox ")]
    assert sandbox and all(s["attributes"]["workspace.id"] == "default" and s["attributes"]["agent.id"] == agent_id
                           and s["attributes"]["task.id"] == task_id for s in sandbox)
    # The sandbox's spans come from the sandbox actor, under the agent's tool calls.
    (write,) = [s for s in sandbox if s["name"] == "sandbox write_file"]
    assert parent(write)["name"] == "tool_call write_file" and parent(parent(write))["name"] == "agent_task"
    # Model calls: the orchestrator's under its runs, the agent's under the task, with their usage.
    models = _named(trace, "model_call")
    assert all(m["attributes"]["llm.token_count.prompt"] > 0 for m in models)
    assert any(parent(m) is root for m in models) and any(parent(m) is task for m in models)
    assert all(m["attributes"]["task.id"] == task_id for m in models if parent(m) is task)
