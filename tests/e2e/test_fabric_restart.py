"""The code name test at the fabric level: tell the orchestrator actor a code name, kill every
actor of the installation (singletons and agents), bootstrap again on the same Postgres, ask
again. The thread's runs and checkpoints live in Postgres, so the new orchestrator remembers."""

from __future__ import annotations

import asyncio
import uuid

from actors.bootstrap import ensure_system_async, shutdown_system, system_actor_names
from actors.client import FabricClient
from actors.common import EVENTS, FLEET, ORCHESTRATOR, REGISTRY, actor_name
from quadracode_ray.envelope import TASK, TASK_RESULT, USER_MESSAGE, EnvelopeFilter
from tests.e2e.conftest import eventually, message_texts, sources, thread_runs


async def test_the_code_name_survives_a_restart_of_every_actor(system):
    settings = system.settings
    thread = str(uuid.uuid4())
    code_name = f"KESTREL-{uuid.uuid4().hex[:6].upper()}"
    before = FabricClient.from_handles(system)
    values = await before.run_and_wait(thread, f"Remember the code name {code_name}", timeout_s=60)
    assert message_texts(values, type_="ai")[-1] == f"Noted: the code name is {code_name}."
    old_orchestrator = system.orchestrator._actor_id

    killed = shutdown_system(settings)
    assert {actor_name(settings, singleton) for singleton in (EVENTS, REGISTRY, FLEET, ORCHESTRATOR)} <= set(killed)
    await eventually(lambda: _gone(settings), timeout=30, what="every actor of the installation gone")

    handles = await ensure_system_async(settings)
    assert handles.orchestrator._actor_id != old_orchestrator
    after = FabricClient.from_handles(handles)
    values = await after.run_and_wait(thread, "What is the code name?", timeout_s=60)
    assert message_texts(values, type_="ai")[-1] == f"The code name is {code_name}."
    # The event log kept the history across the restart: both user messages, once each.
    logged = await handles.events.query.remote(EnvelopeFilter(thread_id=thread, kind=USER_MESSAGE))
    assert [e.envelope.payload["text"] for e in logged] == [f"Remember the code name {code_name}",
                                                             "What is the code name?"]
    # Two runs of the thread, one per message, each on the orchestrator actor of its time.
    runs = await thread_runs(settings, thread)
    assert sources(runs) == [("user_message", "success")] * 2
    assert [r["metadata"]["envelope_id"] for r in runs] == [e.envelope.id for e in logged]


async def _gone(settings) -> bool:
    return not await asyncio.to_thread(system_actor_names, settings)


async def test_a_task_running_when_every_actor_dies_is_done_after_the_restart(system):
    """Kill the whole fabric while an agent is provably mid-command; after the bootstrap the
    orchestrator finds the task running on an agent nobody knows, and a new agent does it."""
    from quadracode_ray.interfaces.workspace import WorkspacePathNotFound
    from sandbox.client import get_workspace

    settings = system.settings
    system = await ensure_system_async(settings)  # the live actors (the test before restarted them)
    thread = str(uuid.uuid4())
    started, gate = f"{thread}.started", f"{thread}.go"
    before = FabricClient.from_handles(system)
    await before.run_and_wait(
        thread, f"delegate to a coder agent: run `touch {started}; while [ ! -f {gate} ]; do sleep 0.1; done; "
                "echo survived`", timeout_s=60)
    workspace = await get_workspace("default", settings)

    async def command_started():
        try:
            return await workspace.read_file(started) == b""
        except WorkspacePathNotFound:
            return False

    await eventually(command_started, timeout=60, what="the agent's command running in the sandbox")
    (task,) = await system.orchestrator.tasks.remote(thread)
    assert task.status == "running"
    first_agent = task.agent_id
    # The command cannot finish before the gate exists: the agent is mid-task when everything dies.
    shutdown_system(settings)
    await eventually(lambda: _gone(settings), timeout=30, what="every actor of the installation gone")
    # The workspace actor died too; a new one re-attaches to the same container.
    workspace = await get_workspace("default", settings)
    await workspace.write_file(gate, "")

    handles = await ensure_system_async(settings)
    after = FabricClient.from_handles(handles)

    async def folded():
        state = await after.get_state(thread)
        results = message_texts(state["values"], name="task_result")
        return results if results and not state["next"] else None

    (result,) = await eventually(folded, timeout=120, what="the task result folded into the thread")
    assert result.startswith(f"[task {task.task_id} succeeded by agent ") and "survived" in result
    (done,) = await handles.orchestrator.tasks.remote(thread)
    assert done.status == "succeeded" and done.agent_id != first_agent
    runs = await thread_runs(settings, thread)
    assert sources(runs) == [("user_message", "success"), ("agent_result", "success")]
    assert runs[1]["metadata"]["task_id"] == task.task_id

    # Counted against the event log: the user's message, the task sent twice (to the agent that
    # died, then to its replacement) and one result; nothing dead-lettered.
    async def carried():
        found = await handles.events.query.remote(
            EnvelopeFilter(thread_id=thread, kinds=[USER_MESSAGE, TASK, TASK_RESULT]), limit=100)
        kinds = sorted(e.envelope.kind for e in found)
        return found if kinds == sorted([USER_MESSAGE, TASK, TASK, TASK_RESULT]) else None

    found = await eventually(carried, timeout=20, what="the thread's envelopes in the event log")
    sent = {e.envelope.id: e.envelope.recipient for e in found if e.envelope.kind == TASK}
    assert sent == {f"task:{task.task_id}:1": first_agent, f"task:{task.task_id}:2": done.agent_id}
    assert await handles.events.dead_letters.remote() == []
