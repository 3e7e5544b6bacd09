"""Delegation end to end: the orchestrator actor, running the real orchestrator graph with the
scripted model, hands "write hello.py that prints 42 and run it" to a coder agent it spawns;
the agent (the real agent graph) does it in the `default` workspace, a real Docker sandbox;
its result comes back into the orchestrator's thread as a run of its own. The run rows and
the envelopes (against the event log) are counted."""

from __future__ import annotations

import re
import uuid

import psycopg

from actors.client import FabricClient
from quadracode_ray.envelope import TASK, TASK_RESULT, USER_MESSAGE, EnvelopeFilter
from sandbox.client import get_workspace
from sandbox.deployments.docker import LABEL_INSTALLATION
from tests.e2e.conftest import eventually, file_exists, message_texts, sources, thread_runs

INSTRUCTION = "delegate to a coder agent: write hello.py that prints 42 and run it"
CARRIED = [USER_MESSAGE, TASK, TASK_RESULT]


async def _logged(system, thread_id: str, kinds: list[str]) -> list:
    return await system.events.query.remote(EnvelopeFilter(thread_id=thread_id, kinds=kinds), limit=1000)


async def test_orchestrator_delegates_hello_42_to_a_coder_agent_in_the_default_workspace(system, docker_client):
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())

    # The user's run ends as soon as the task is delegated: it returns a task id, not the result.
    values = await client.run_and_wait(thread, INSTRUCTION, timeout_s=120)
    answer = message_texts(values, type_="ai")[-1]
    match = re.search(r"Delegated to agent \S+ as task (\S+?)\.", answer)
    assert match, answer
    task_id = match.group(1)
    assert set(values["tasks"]) == {task_id}
    assert values["tasks"][task_id]["status"] in ("pending", "running")  # the run did not wait for the agent

    # A coder agent was spawned by the fleet and registered, on the default workspace.
    registered = await system.registry.list.remote(kind="coder")
    assert [a.workspace_id for a in registered] == ["default"]
    agent_id = registered[0].agent_id
    assert [a.agent_id for a in await system.fleet.list.remote()] == [agent_id]

    # The agent's result is folded into the orchestrator's thread, and answered, in a run of its own.
    async def result_run():
        runs = await thread_runs(system.settings, thread)
        return runs if sources(runs) == [("user_message", "success"), ("agent_result", "success")] else None

    user_run, result_run_row = await eventually(result_run, timeout=120, what="the run of the task result to finish")
    state = await client.get_state(thread)
    assert state["next"] == []
    results = message_texts(state["values"], name="task_result")
    assert len(results) == 1
    assert results[0].startswith(f"[task {task_id} succeeded by agent {agent_id}]")
    assert "42" in results[0]
    assert f"Task {task_id} (agent {agent_id}) succeeded: 42" in message_texts(state["values"], type_="ai")[-1]
    tasks = await system.orchestrator.tasks.remote(thread)
    assert [(t.task_id, t.agent_id, t.status) for t in tasks] == [(task_id, agent_id, "succeeded")]

    # The orchestrator only managed the fleet; the file and the command were the agent's work...
    tools_used = [m.get("name") for m in state["values"]["messages"] if m.get("type") == "tool"]
    assert tools_used == ["list_agents", "spawn_agent", "delegate"]
    # ...done in the default workspace's sandbox container, not in any actor's process.
    workspace = await get_workspace("default", system.settings)
    assert await workspace.read_file("hello.py") == b"print(42)\n"
    run = await workspace.exec("python3 hello.py", timeout=30)
    assert (run.exit_code, run.stdout.strip()) == (0, "42")
    label = f"{LABEL_INSTALLATION}={system.settings.sandbox_installation_id}"
    assert len(docker_client.containers.list(filters={"label": label})) == 1

    # The result arrived after the user's run had finished: the orchestrator never blocked.
    async def carried_once():
        found = await _logged(system, thread, CARRIED)
        return found if sorted(e.envelope.kind for e in found) == sorted(CARRIED) else None

    carried = await eventually(carried_once, timeout=20, what="one user message, task and result in the log")
    assert carried[[e.envelope.kind for e in carried].index(TASK)].envelope.payload["task_id"] == task_id
    user_envelope = next(e.envelope.id for e in carried if e.envelope.kind == USER_MESSAGE)
    assert user_run["ended_at"] < result_run_row["created_at"]  # queued after the user's run had ended

    # None lost, none duplicated: every envelope once in the log, each input one run, run once.
    result_envelope = next(e.envelope.id for e in carried if e.envelope.kind == TASK_RESULT)
    assert [r["metadata"]["envelope_id"] for r in (user_run, result_run_row)] == [user_envelope, result_envelope]
    assert result_run_row["metadata"]["task_id"] == task_id and result_run_row["metadata"]["agent_id"] == agent_id
    host = system.settings.actor_name_prefix + "orchestrator"
    assert {(r["executor"], r["attempt"]) for r in (user_run, result_run_row)} == {(host, 1)}
    assert await system.events.dead_letters.remote() == []


async def test_the_agent_graph_of_a_delegated_task_is_checkpointed_in_postgres(system, database_url):
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())
    await client.run_and_wait(thread, "delegate to a coder agent: write notes.txt with content hi", timeout_s=120)

    async def succeeded():
        tasks = await system.orchestrator.tasks.remote(thread)
        return tasks if tasks and tasks[0].status == "succeeded" else None

    (task,) = await eventually(succeeded, timeout=120, what="the delegated task to succeed")
    count = "SELECT count(*) FROM checkpoints WHERE thread_id LIKE %s"
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        orchestrator_rows = (await (await conn.execute(count, (thread,))).fetchone())[0]
        agent_rows = (await (await conn.execute(count, (f"task:{task.task_id}%",))).fetchone())[0]
    assert orchestrator_rows > 0  # the orchestrator's thread is there
    assert agent_rows > 0


async def test_a_stopped_thread_keeps_its_agents_result_and_stays_halted(system):
    """An emergency stop while a delegated task runs: the agent's result is still folded into the
    thread (nothing lost), but the halted thread does not act on it until the human resumes."""
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())
    started, gate = f"{thread}.started", f"{thread}.go"
    await client.run_and_wait(thread, f"delegate to a coder agent: run `touch {started}; "
                                      f"while [ ! -f {gate} ]; do sleep 0.1; done; echo 42`", timeout_s=60)
    workspace = await get_workspace("default", system.settings)
    await eventually(lambda: file_exists(workspace, started), timeout=60, what="the agent's command running")
    await client.stop_thread(thread)
    await workspace.write_file(gate, "")

    async def result_run_finished():
        runs = await thread_runs(system.settings, thread)
        return sources(runs) == [("user_message", "success"), ("agent_result", "success")]

    await eventually(result_run_finished, timeout=120, what="the task result's run to end")
    state = await client.get_state(thread)
    (folded,) = message_texts(state["values"], name="task_result")
    assert "succeeded" in folded and "42" in folded
    assert state["next"] and state["values"]["halt"]["kind"] == "emergency_stop"
    assert message_texts(state["values"], type_="ai")[-1].startswith("Delegated to agent")  # not acted upon

    values = await client.run_and_wait_resume(thread, "continue", timeout_s=60)
    assert "succeeded: 42" in message_texts(values, type_="ai")[-1]

