"""Autonomous mode through the real orchestrator actor: a guardrail trips and the thread stops
to ask the human; an emergency stop halts a running thread mid-command. The orchestrator
graph runs its commands in the real `default` sandbox with the scripted model."""

from __future__ import annotations

import asyncio
import uuid

from actors.client import FabricClient
from quadracode_ray.envelope import THREAD_RUN, THREAD_UPDATE
from sandbox.client import existing_workspace
from tests.e2e.conftest import message_texts

MAX_ITERATIONS = 3
E2E_SETTINGS = {"autonomy_max_iterations": MAX_ITERATIONS, "autonomy_max_agents_per_thread": 0}


def new_thread(what: str) -> str:
    return f"e2e-{what}-{uuid.uuid4().hex[:8]}"


async def test_a_guardrail_trips_and_the_thread_asks_the_human(system):
    client = FabricClient.from_handles(system)
    thread = new_thread("guardrail")
    ticks = f"{thread}.ticks"

    # "keep running" loops forever on its own; only the iteration guardrail ends the run.
    await client.run_and_wait(thread, f"keep running `echo tick >> {ticks}`", timeout_s=120)
    state = await client.get_state(thread)
    assert state["next"], "the thread should be halted, waiting for the human"
    halt = state["values"]["halt"]
    assert halt["kind"] == "guardrail" and f"{MAX_ITERATIONS} model iterations" in halt["reason"]
    assert len(message_texts(state["values"], type_="tool", name="exec")) == MAX_ITERATIONS
    workspace = existing_workspace("default")
    assert (await workspace.read_file(ticks)).decode().splitlines() == ["tick"] * MAX_ITERATIONS

    # Nothing more happens while it waits: the human's "stop" ends the turn.
    values = await client.run_and_wait_resume(thread, "stop", timeout_s=60)
    assert values["stopped"] is True
    assert message_texts(values, type_="ai")[-1].startswith("Stopped (guardrail")
    assert (await client.get_state(thread))["next"] == []
    assert (await workspace.read_file(ticks)).decode().splitlines() == ["tick"] * MAX_ITERATIONS


async def test_the_agents_per_thread_guardrail_halts_before_spawning(system):
    client = FabricClient.from_handles(system)
    thread = new_thread("agents")
    await client.run_and_wait(thread, "delegate to a coder agent: write hello.py that prints 1", timeout_s=60)
    state = await client.get_state(thread)
    assert state["next"] and state["values"]["halt"]["kind"] == "guardrail"
    assert "agents for this thread" in state["values"]["halt"]["reason"]
    assert await system.fleet.list.remote() == []  # nothing spawned while the human decides
    assert await system.orchestrator.tasks.remote(thread) == []


async def test_emergency_stop_halts_a_running_thread_mid_command(system):
    client = FabricClient.from_handles(system)
    thread = new_thread("stop")
    cursor = await client.cursor()
    # The command would hold the run for two minutes (the exec tool's default timeout).
    receipt = await client.submit_user_message(thread, "run `sleep 600`")

    async def run_outcome():
        async for logged in client.watch_thread(thread, cursor=cursor, kinds=[THREAD_RUN, THREAD_UPDATE]):
            payload = logged.envelope.payload
            if logged.envelope.kind == THREAD_UPDATE and "exec" in str(payload.get("update", {}).get("model")):
                exec_called.set()  # the model asked for the command: the tools node is running it now
            elif payload.get("envelope_id") == receipt.envelope_id and payload.get("status") == "finished":
                return payload

    exec_called = asyncio.Event()
    outcome = asyncio.ensure_future(run_outcome())
    await asyncio.wait_for(exec_called.wait(), 60)
    assert not outcome.done()
    await client.stop_thread(thread)
    await asyncio.wait_for(outcome, 60)  # far sooner than the command would have ended

    state = await client.get_state(thread)
    assert state["next"] and state["values"]["halt"]["kind"] == "emergency_stop"
    (stopped_exec,) = message_texts(state["values"], type_="tool", name="exec")
    assert "emergency stop" in stopped_exec

    # Resuming with "stop" ends the turn; the stop signal is cleared, so the thread works again.
    values = await client.run_and_wait_resume(thread, "stop", timeout_s=60)
    assert values["stopped"] is True
    values = await client.run_and_wait(thread, "remember the code name HERON", timeout_s=60)
    assert message_texts(values, type_="ai")[-1] == "Noted: the code name is HERON."

