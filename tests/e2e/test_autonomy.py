"""Autonomous mode through the real orchestrator actor: a guardrail trips and the thread stops
to ask the human; an emergency stop halts a running thread mid-command. The orchestrator
graph runs its commands in the real `default` sandbox with the scripted model."""

from __future__ import annotations

import asyncio
import uuid

from actors.client import FabricClient
from sandbox.client import get_workspace
from tests.e2e.conftest import eventually, file_exists, message_texts, sources, thread_runs

MAX_ITERATIONS = 3
E2E_SETTINGS = {"autonomy_max_iterations": MAX_ITERATIONS, "autonomy_max_agents_per_thread": 0}


def new_thread() -> str:
    return str(uuid.uuid4())


async def test_a_guardrail_trips_and_the_thread_asks_the_human(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    ticks = f"guardrail-{thread}.ticks"

    # "keep running" loops forever on its own; only the iteration guardrail ends the run.
    await client.run_and_wait(thread, f"keep running `echo tick >> {ticks}`", timeout_s=120)
    state = await client.get_state(thread)
    assert state["next"], "the thread should be halted, waiting for the human"
    halt = state["values"]["halt"]
    assert halt["kind"] == "guardrail" and f"{MAX_ITERATIONS} model iterations" in halt["reason"]
    assert len(message_texts(state["values"], type_="tool", name="exec")) == MAX_ITERATIONS
    workspace = await get_workspace("default", system.settings)
    assert (await workspace.read_file(ticks)).decode().splitlines() == ["tick"] * MAX_ITERATIONS

    # Nothing more happens while it waits: the human's "stop" ends the turn.
    values = await client.run_and_wait_resume(thread, "stop", timeout_s=60)
    assert values["stopped"] is True
    assert message_texts(values, type_="ai")[-1].startswith("Stopped (guardrail")
    assert (await client.get_state(thread))["next"] == []
    assert (await workspace.read_file(ticks)).decode().splitlines() == ["tick"] * MAX_ITERATIONS


async def test_the_agents_per_thread_guardrail_halts_before_spawning(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    await client.run_and_wait(thread, "delegate to a coder agent: write hello.py that prints 1", timeout_s=60)
    state = await client.get_state(thread)
    assert state["next"] and state["values"]["halt"]["kind"] == "guardrail"
    assert "agents for this thread" in state["values"]["halt"]["reason"]
    assert await system.fleet.list.remote() == []  # nothing spawned while the human decides
    assert await system.orchestrator.tasks.remote(thread) == []


async def stop_mid_command(system, client: FabricClient, thread: str, command: str):
    """Start ``command`` (it must run long) through the orchestrator, wait until it runs in the
    sandbox, stop the thread, and wait for the run to end; returns the workspace client."""
    started = f"{thread}.started"
    receipt = await client.submit_user_message(thread, f"run `touch {started}; {command}`")
    outcome = asyncio.ensure_future(client.wait_run(receipt.run_id, timeout_s=120))
    workspace = await get_workspace("default", system.settings)
    await eventually(lambda: file_exists(workspace, started), timeout=60, what="the command running in the sandbox")
    assert not outcome.done()
    await client.stop_thread(thread)
    await asyncio.wait_for(outcome, 60)  # far sooner than the command would have ended (120 s exec timeout)
    # The run ended as a run does: in success, its thread halted (interrupted) for the human.
    assert sources(await thread_runs(system.settings, thread)) == [("user_message", "success")]
    return workspace


async def test_emergency_stop_halts_a_running_thread_mid_command(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    await stop_mid_command(system, client, thread, "sleep 600")

    state = await client.get_state(thread)
    assert state["next"] and state["values"]["halt"]["kind"] == "emergency_stop"
    (stopped_exec,) = message_texts(state["values"], type_="tool", name="exec")
    assert "emergency stop" in stopped_exec

    # Resuming with "stop" ends the turn; the stop signal is cleared, so the thread works again.
    values = await client.run_and_wait_resume(thread, "stop", timeout_s=60)
    assert values["stopped"] is True
    values = await client.run_and_wait(thread, "remember the code name HERON", timeout_s=60)
    assert message_texts(values, type_="ai")[-1] == "Noted: the code name is HERON."



async def test_emergency_stop_also_kills_the_command_it_interrupted(system):
    client = FabricClient.from_handles(system)
    workspace = await stop_mid_command(system, client, new_thread(), "sleep 599")

    async def gone():
        listing = await workspace.exec(PROCESS_LIST, timeout=10)
        return "sleep 599" not in listing.stdout

    # Each probe is an exec in the sandbox, seconds on a loaded machine: the deadline leaves room
    # for several (the kill itself comes with the stop, which the run's end already waited for).
    await eventually(gone, timeout=30, what="the interrupted command to be killed")


PROCESS_LIST = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
