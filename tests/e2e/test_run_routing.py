"""Where runs execute: runs of the `orchestrator` assistant in the orchestrator actor, and an
agent's result comes back to the thread as a later run that a client lists and joins; a thread
driven by the fabric's client and by the API at once has one history and one stream.

The whole fabric (real graphs, the scripted model, a real Docker sandbox) with the Serve app
deployed beside it, reached over HTTP with the official langgraph-sdk client.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from actors.client import FabricClient
from actors.common import AGENT_PREFIX, ORCHESTRATOR, actor_name
from quadracode_ray import NAMESPACE
from sandbox.client import get_workspace
from tests.e2e.conftest import (
    eventually,
    file_exists,
    message_texts,
    serve_app_beside,
    sources,
    thread_runs,
)

APP = "qr-routing"


@pytest.fixture(scope="module")
def api(system, serve_http_port: int) -> Iterator[str]:
    """The Serve app on the module's fabric (already started by ``system``)."""
    with serve_app_beside(system.settings, serve_http_port, APP) as url:
        yield url


@pytest.fixture
def client(api: str):
    from langgraph_sdk import get_client

    return get_client(url=api, timeout=120)


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def _run_row(database_url: str, run_id: str) -> dict:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT executor, attempt, status FROM qr_runs WHERE run_id = %s", (run_id,))
        executor, attempt, status = await cursor.fetchone()
    return {"executor": executor, "attempt": attempt, "status": status}


async def test_a_run_of_the_orchestrator_assistant_executes_in_the_orchestrator_actor(system, client, database_url):
    before = await system.orchestrator.run_stats.remote()
    thread = await client.threads.create()
    code_name = f"KITE-{uuid.uuid4().hex[:6].upper()}"
    run = await client.runs.create(thread["thread_id"], "orchestrator", input=user(f"Remember the code name {code_name}"))
    await client.runs.join(thread["thread_id"], run["run_id"])
    state = await client.threads.get_state(thread["thread_id"])
    assert message_texts(state["values"], type_="ai")[-1] == f"Noted: the code name is {code_name}."
    row = await _run_row(database_url, run["run_id"])
    assert row == {"executor": actor_name(system.settings, ORCHESTRATOR), "attempt": 1, "status": "success"}
    after = await system.orchestrator.run_stats.remote()
    assert after["runs_started"] == before["runs_started"] + 1
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"


async def test_an_agents_result_comes_back_as_a_later_run_that_a_client_lists_and_joins(system, client):
    thread_id = (await client.threads.create())["thread_id"]
    values = await client.runs.wait(thread_id, "orchestrator",
                                    input=user("delegate to a coder agent: write hello.py that prints 42 and run it"))
    match = re.search(r"Delegated to agent (\S+) as task (\S+?)\.", message_texts(values, type_="ai")[-1])
    assert match, values
    agent_id, task_id = match.groups()

    async def result_run():
        runs = await client.runs.list(thread_id)
        return next((r for r in runs if (r["metadata"] or {}).get("source") == "agent_result"), None)

    run = await eventually(result_run, timeout=120, what="the agent's result to be queued as a run of the thread")
    assert run["metadata"]["task_id"] == task_id and run["metadata"]["agent_id"] == agent_id
    assert len(await client.runs.list(thread_id)) == 2
    output = await client.runs.join(thread_id, run["run_id"])  # a client joins it like any run
    (folded,) = message_texts(output, name="task_result")
    assert folded.startswith(f"[task {task_id} succeeded by agent {agent_id}]") and "42" in folded
    assert f"Task {task_id} (agent {agent_id}) succeeded: 42" in message_texts(output, type_="ai")[-1]
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "success"
    assert (await client.threads.get(thread_id))["status"] == "idle"
    tasks = await system.orchestrator.tasks.remote(thread_id)
    assert [(t.task_id, t.status) for t in tasks] == [(task_id, "succeeded")]


async def test_a_run_of_the_agent_assistant_executes_in_an_agent_actor(system, client, database_url):
    import ray

    thread_id = (await client.threads.create())["thread_id"]
    name = f"{thread_id}.txt"
    output = await client.runs.wait(thread_id, "agent", input=user(f"write {name} with content hi"))
    assert output["result"]["status"] == "succeeded", output
    (run,) = await client.runs.list(thread_id)
    row = await _run_row(database_url, run["run_id"])
    agent_prefix = system.settings.actor_name_prefix + AGENT_PREFIX
    assert row["executor"].startswith(agent_prefix) and row["status"] == "success"
    agent_id = row["executor"].removeprefix(agent_prefix)
    assert agent_id in [a.agent_id for a in await system.fleet.list.remote()]
    stats = await ray.get_actor(row["executor"], namespace=NAMESPACE).run_stats.remote()
    assert stats["runs_started"] >= 1
    workspace = await get_workspace("default", system.settings)
    assert await workspace.read_file(name) == b"hi"


async def test_an_agent_run_outlives_its_agent(system, client, database_url):
    """Agents are never restarted: the orchestrator's run host adopts the dead agent's run."""
    import ray

    thread_id = (await client.threads.create())["thread_id"]
    started, gate = f"{thread_id}.started", f"{thread_id}.go"
    run = await client.runs.create(
        thread_id, "agent", input=user(f"run `touch {started}; while [ ! -f {gate} ]; do sleep 0.1; done; echo 42`"))
    workspace = await get_workspace("default", system.settings)
    await eventually(lambda: file_exists(workspace, started), timeout=60, what="the agent run's command running")
    host = (await _run_row(database_url, run["run_id"]))["executor"]
    assert host.startswith(system.settings.actor_name_prefix + AGENT_PREFIX)
    ray.kill(ray.get_actor(host, namespace=NAMESPACE), no_restart=True)

    async def adopted():
        row = await _run_row(database_url, run["run_id"])
        return row if row["executor"] == actor_name(system.settings, ORCHESTRATOR) and row["attempt"] == 2 else None

    await eventually(adopted, timeout=120, what="the orchestrator to adopt the dead agent's run")
    await workspace.write_file(gate, "")
    output = await client.runs.join(thread_id, run["run_id"])
    assert output["result"]["status"] == "succeeded" and "42" in output["result"]["output"], output["result"]
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "success"


async def test_a_run_in_the_orchestrator_actor_survives_the_actors_death(system, client, database_url):
    import ray

    thread_id = (await client.threads.create())["thread_id"]
    started, gate = f"{thread_id}.started", f"{thread_id}.go"
    run = await client.runs.create(
        thread_id, "orchestrator",
        input=user(f"run `touch {started}; while [ ! -f {gate} ]; do sleep 0.1; done; echo 42`"))
    workspace = await get_workspace("default", system.settings)
    await eventually(lambda: file_exists(workspace, started), timeout=60, what="the run's command running")
    before = await system.orchestrator.run_stats.remote()
    ray.kill(system.orchestrator, no_restart=False)  # Ray restarts it; its run host recovers the run

    async def second_attempt():
        row = await _run_row(database_url, run["run_id"])
        return row if row["attempt"] == 2 and row["status"] == "running" else None

    await eventually(second_attempt, timeout=120, what="the run's second attempt in the restarted actor")
    await workspace.write_file(gate, "")
    output = await client.runs.join(thread_id, run["run_id"])
    assert "42" in message_texts(output, type_="ai")[-1]
    row = await _run_row(database_url, run["run_id"])
    assert row == {"executor": actor_name(system.settings, ORCHESTRATOR), "attempt": 2, "status": "success"}
    # The restarted actor started this one run: the recovered attempt, not a new run.
    assert before["runs_started"] >= 1 and (await system.orchestrator.run_stats.remote())["runs_started"] == 1
    assert (await client.threads.get(thread_id))["status"] == "idle"



async def test_a_thread_driven_by_user_messages_and_agent_results_has_one_history_and_one_stream(system, client):
    """User messages given to the orchestrator actor (FabricClient), the agent's result they lead
    to, and a message over the API: all runs of one thread in qr_runs, on one host, followed by one
    ``threads.join_stream``, written to one checkpoint history that the API reads."""
    fabric = FabricClient.from_handles(system)
    thread_id = str(uuid.uuid4())
    code_name = f"OSPREY-{uuid.uuid4().hex[:6].upper()}"
    first = await fabric.submit_user_message(thread_id, f"Remember the code name {code_name}")
    await fabric.wait_run(first.run_id, timeout_s=60)

    ended: list[str] = []  # the runs the thread stream saw end, in order

    async def follow() -> None:
        async for part in await client.threads.join_stream(thread_id, stream_mode="lifecycle"):
            if part.event == "metadata" and (part.data or {}).get("status") == "run_done":
                ended.append(part.data["run_id"])

    follower = asyncio.create_task(follow())
    try:
        second = await fabric.submit_user_message(thread_id, "delegate to a coder agent: write osprey.txt with content hi")

        async def result_run() -> dict | None:
            runs = await thread_runs(system.settings, thread_id)
            done = [("user_message", "success"), ("user_message", "success"), ("agent_result", "success")]
            return runs[2] if sources(runs) == done and str(runs[2]["run_id"]) in ended else None

        result = await eventually(result_run, timeout=180, what="the agent's result run, seen on the thread stream")
        assert ended[-2:] == [second.run_id, str(result["run_id"])]  # one stream, in the thread's order
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower

    # The API lists the same runs and reads the same history; its own run continues it.
    listed = await client.runs.list(thread_id)
    assert sorted(r["run_id"] for r in listed) == sorted([first.run_id, second.run_id, str(result["run_id"])])
    history = await client.threads.get_history(thread_id, limit=100)
    assert {first.run_id, second.run_id, str(result["run_id"])} <= {(h["metadata"] or {}).get("run_id") for h in history}
    values = await client.runs.wait(thread_id, "orchestrator", input=user("What is the code name?"))
    assert message_texts(values, type_="ai")[-1] == f"The code name is {code_name}."
    (folded,) = message_texts(values, name="task_result")
    assert "succeeded" in folded
    runs = await thread_runs(system.settings, thread_id)
    assert {r["executor"] for r in runs} == {actor_name(system.settings, ORCHESTRATOR)}
    assert (await client.threads.get(thread_id))["status"] == "idle"
