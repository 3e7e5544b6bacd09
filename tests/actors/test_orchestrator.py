"""The orchestrator with real agents, Ray and Postgres: delegation round trips, retries that
reach the graph exactly once, a SIGKILLed agent, a killed orchestrator. Every input is a run in
qr_runs hosted by the orchestrator actor (the run rows are checked); the envelopes are counted
against the event log."""

from __future__ import annotations

import os
import signal
import uuid

import psycopg
import pytest
import ray
from psycopg.rows import dict_row

from actors.client import FabricClient, RunFailed
from quadracode_ray.envelope import (
    AGENT_LOST,
    CANCEL_TASK,
    TASK,
    TASK_RESULT,
    USER_MESSAGE,
    EnvelopeFilter,
)
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {"fleet_max_agents": 6, "delivery_max_attempts": 3}
CARRIED = [USER_MESSAGE, TASK, TASK_RESULT]


def new_thread() -> str:
    return str(uuid.uuid4())


def thread_runs(system, thread_id: str) -> list[dict]:
    """The thread's runs, oldest first."""
    with psycopg.connect(system.settings.database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM qr_runs WHERE thread_id = %s ORDER BY created_at", (thread_id,)).fetchall()


async def logged(system, thread_id: str, kinds: list[str] = CARRIED) -> dict[str, list]:
    found = await system.events.query.remote(EnvelopeFilter(thread_id=thread_id, kinds=kinds), limit=1000)
    by_kind: dict[str, list] = {kind: [] for kind in kinds}
    for item in found:
        by_kind[item.envelope.kind].append(item.envelope)
    return by_kind


async def expect_logged(system, thread_id: str, counts: dict[str, int]) -> dict[str, list]:
    """Every envelope of the thread is in the event log, exactly once each."""
    async def complete():
        by_kind = await logged(system, thread_id, list(counts))
        return by_kind if {k: len(v) for k, v in by_kind.items()} == counts else None
    by_kind = await eventually(complete, timeout=20, what=f"event log of {thread_id} to hold {counts}")
    ids = [e.id for envelopes in by_kind.values() for e in envelopes]
    assert len(ids) == len(set(ids))
    return by_kind


def assistant_texts(values: dict) -> list[str]:
    return [m["content"] for m in values.get("messages", []) if m.get("role") == "assistant"]


async def thread_values(client: FabricClient, thread_id: str) -> dict:
    return (await client.get_state(thread_id))["values"]


async def result_message(client: FabricClient, thread_id: str, task_id: str) -> list[str]:
    return [t for t in assistant_texts(await thread_values(client, thread_id)) if t.startswith(f"result {task_id}")]


async def test_user_message_runs_the_thread(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    values = await client.run_and_wait(thread, "hello", timeout_s=60)
    assert assistant_texts(values) == ["echo: hello"]
    values = await client.run_and_wait(thread, "again", timeout_s=60)
    assert assistant_texts(values) == ["echo: hello", "echo: again"]  # checkpointed between runs
    by_kind = await expect_logged(system, thread, {USER_MESSAGE: 2})
    runs = thread_runs(system, thread)
    host = system.settings.actor_name_prefix + "orchestrator"
    assert [(r["status"], r["executor"], r["metadata"]["source"], r["kwargs"]["graph_id"]) for r in runs] == \
        [("success", host, "user_message", "orchestrator")] * 2
    assert sorted(r["metadata"]["envelope_id"] for r in runs) == sorted(e.id for e in by_kind[USER_MESSAGE])


async def test_round_trip_orchestrator_agent_orchestrator(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    values = await client.run_and_wait(thread, "delegate: compute the answer", timeout_s=60)
    (task_id,) = values["delegated"]  # delegation returned at once: the run finished before the agent
    texts = await eventually(lambda: result_message(client, thread, task_id), timeout=60, what="task result")
    assert texts == [f"result {task_id}: succeeded done: compute the answer"]
    info = await system.orchestrator.task_status.remote(task_id)
    assert info.status == "succeeded" and info.agent_id
    by_kind = await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 1, TASK_RESULT: 1})
    assert by_kind[TASK][0].recipient == info.agent_id
    assert by_kind[TASK_RESULT][0].sender == info.agent_id


async def test_a_graph_failing_twice_on_a_result_reaches_it_once(system):
    """The result's run raises twice and succeeds on its third attempt, from its checkpoint: the
    result is folded in once, the delivery handled once."""
    client = FabricClient.from_handles(system)
    thread = new_thread()
    values = await client.run_and_wait(thread, "delegate: a flaky job", timeout_s=60)
    (task_id,) = values["delegated"]
    await eventually(lambda: result_message(client, thread, task_id), timeout=60, what="task result")
    await system.orchestrator.wait_idle.remote()
    values = await thread_values(client, thread)
    assert [r["task_id"] for r in values["task_results"]] == [task_id]
    assert len(await result_message(client, thread, task_id)) == 1
    by_kind = await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 1, TASK_RESULT: 1})
    result_id = by_kind[TASK_RESULT][0].id
    runs = thread_runs(system, thread)
    assert [(r["metadata"]["source"], r["status"], r["attempt"]) for r in runs] == \
        [("user_message", "success", 1), ("agent_result", "success", 3)]  # two failed attempts, the third ran
    assert runs[1]["metadata"]["envelope_id"] == result_id and runs[1]["metadata"]["task_id"] == task_id
    with psycopg.connect(system.settings.database_url) as conn:
        status, attempts = conn.execute(
            "SELECT status, attempts FROM qr_deliveries WHERE recipient = 'orchestrator' AND envelope_id = %s",
            (result_id,)).fetchone()
    assert (status, attempts) == ("done", 1)  # the delivery queued its run once


async def test_a_graph_that_always_fails_ends_its_run_in_error(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    with pytest.raises(RunFailed, match="always fails"):
        await client.run_and_wait(thread, "crash", timeout_s=60)
    (run,) = thread_runs(system, thread)
    assert (run["status"], run["attempt"]) == ("error", 3) and "always fails" in run["error"]["message"]
    with psycopg.connect(system.settings.database_url) as conn:
        assert conn.execute("SELECT status FROM qr_threads WHERE thread_id = %s", (thread,)).fetchone()[0] == "error"
    await expect_logged(system, thread, {USER_MESSAGE: 1})


@pytest.mark.slow
async def test_sigkilled_agent_task_goes_to_a_new_agent(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    victim = await system.fleet.spawn.remote({"kind": "coder", "capabilities": ["sigkill"]})
    values = await client.run_and_wait(thread, f"delegate@sigkill: hang-on:{victim.agent_id} then finish",
                                       timeout_s=60)
    (task_id,) = values["delegated"]
    handle = await system.fleet.get_handle.remote(victim.agent_id)
    await eventually(lambda: _running(handle, task_id), timeout=30, what="task running on the victim")
    os.kill(await handle.pid.remote(), signal.SIGKILL)

    texts = await eventually(lambda: result_message(client, thread, task_id), timeout=60, what="reassigned result")
    assert texts == [f"result {task_id}: succeeded done: hang-on:{victim.agent_id} then finish"]
    info = await system.orchestrator.task_status.remote(task_id)
    assert info.status == "succeeded" and info.agent_id != victim.agent_id
    lost = await system.events.query.remote(EnvelopeFilter(kind=AGENT_LOST, text_regex=victim.agent_id))
    assert len(lost) == 1  # the orchestrator learnt it from the registry
    by_kind = await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 2, TASK_RESULT: 1})
    assert [e.recipient for e in by_kind[TASK]] == [victim.agent_id, info.agent_id]
    assert victim.agent_id not in {a.agent_id for a in await system.fleet.list.remote()}


async def _running(handle, task_id: str) -> bool:
    return task_id in (await handle.status.remote())["running_tasks"]


async def test_killed_orchestrator_continues_the_thread_from_its_checkpoint(system, tmp_path):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    marker = tmp_path / "paused"
    receipt = await client.submit_user_message(thread, f"pause: {marker}")
    await eventually(lambda: _exists(marker), timeout=60, what="the graph to reach node pause")
    # Threads run concurrently: another thread is served while this one hangs.
    other = await client.run_and_wait(new_thread(), "still here?", timeout_s=60)
    assert assistant_texts(other) == ["echo: still here?"]
    ray.kill(system.orchestrator, no_restart=False)

    values = await eventually(lambda: _finished(client, thread), timeout=90, what="thread resumed after restart")
    assert values["think_runs"] == 1  # node think ran once: the restart resumed from its checkpoint
    assert assistant_texts(values).count("resumed after pause") == 1
    # One run, its second attempt on the restarted actor; its end is recorded just after the
    # checkpoint read above, so wait for it.
    async def run_ended():
        runs = thread_runs(system, thread)
        return runs if runs and runs[0]["status"] != "running" else None

    (run,) = await eventually(run_ended, timeout=30, what="the run's end recorded")
    assert (run["run_id"], run["status"], run["attempt"]) == (uuid.UUID(receipt.run_id), "success", 2)
    await expect_logged(system, thread, {USER_MESSAGE: 1})


async def _exists(path) -> bool:
    return path.exists()


async def _finished(client: FabricClient, thread: str):
    try:
        values = await thread_values(client, thread)
    except ray.exceptions.RayActorError:
        return None
    return values if "resumed after pause" in assistant_texts(values) else None


async def test_cancelling_a_running_task_stops_the_agent_and_closes_the_task(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    agent = await system.fleet.spawn.remote({"kind": "coder", "capabilities": ["cancel"]})
    values = await client.run_and_wait(thread, f"delegate@cancel: hang-on:{agent.agent_id}", timeout_s=60)
    (task_id,) = values["delegated"]
    handle = await system.fleet.get_handle.remote(agent.agent_id)
    await eventually(lambda: _running(handle, task_id), timeout=30, what="task running on the agent")
    info = await system.orchestrator.cancel_task.remote(task_id)
    assert info.status == "cancelled"
    await eventually(lambda: _stopped(handle, task_id), timeout=30, what="the agent to stop the task")
    # The agent's "cancelled" result arrives and is logged, but the closed task ignores it.
    await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 1, CANCEL_TASK: 1, TASK_RESULT: 1})
    await system.orchestrator.wait_idle.remote()
    assert await result_message(client, thread, task_id) == []
    assert (await system.orchestrator.task_status.remote(task_id)).status == "cancelled"
    assert (await system.orchestrator.cancel_task.remote(task_id)).status == "cancelled"  # idempotent
    await system.fleet.kill.remote(agent.agent_id)


async def _stopped(handle, task_id: str) -> bool:
    return not await _running(handle, task_id)


@pytest.mark.slow
async def test_agent_dying_while_the_registry_restarts_is_caught_by_the_watchdog(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    victim = await system.fleet.spawn.remote({"kind": "coder", "capabilities": ["watchdog"]})
    values = await client.run_and_wait(thread, f"delegate@watchdog: hang-on:{victim.agent_id} then finish",
                                       timeout_s=60)
    (task_id,) = values["delegated"]
    handle = await system.fleet.get_handle.remote(victim.agent_id)
    await eventually(lambda: _running(handle, task_id), timeout=30, what="task running on the victim")
    pid = await handle.pid.remote()
    ray.kill(system.registry, no_restart=False)  # the registry forgets everyone ...
    os.kill(pid, signal.SIGKILL)  # ... and the victim dies before it could register again

    texts = await eventually(lambda: result_message(client, thread, task_id), timeout=60, what="reassigned result")
    assert texts == [f"result {task_id}: succeeded done: hang-on:{victim.agent_id} then finish"]
    info = await system.orchestrator.task_status.remote(task_id)
    assert info.agent_id != victim.agent_id
    await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 2, TASK_RESULT: 1})


async def test_an_interrupted_thread_resumes_with_the_answer(system):
    client = FabricClient.from_handles(system)
    thread = new_thread()
    await client.run_and_wait(thread, "ask: favourite colour?", timeout_s=60)
    state = await client.get_state(thread)
    assert state["next"] == ["think"]  # waiting for the human
    values = await client.run_and_wait_resume(thread, "blue", timeout_s=60)
    assert "answer: blue" in assistant_texts(values)
    assert (await client.get_state(thread))["next"] == []


async def test_bad_input_is_refused_and_changes_nothing(system):
    thread = new_thread()
    with pytest.raises(ValueError, match="exactly one"):
        await system.orchestrator.submit.remote(thread, {"messages": []}, message="both")
    with pytest.raises(ValueError, match="thread_id"):
        await system.orchestrator.submit.remote("", message="no thread")
    with pytest.raises(ValueError, match="UUID"):
        await system.orchestrator.submit.remote("thread-1", message="a thread id is a UUID")
    with pytest.raises(ValueError, match="UUID"):
        await system.orchestrator.delegate.remote("work", "thread-1")
    with pytest.raises(ValueError, match="non-empty instruction"):
        await system.orchestrator.delegate.remote("  ", thread)
    with pytest.raises(LookupError, match="no task"):
        await system.orchestrator.task_status.remote("no-such-task")
    assert await system.orchestrator.tasks.remote(thread) == []
    assert await system.events.count.remote(EnvelopeFilter(thread_id=thread)) == 0
    with psycopg.connect(system.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM qr_deliveries WHERE envelope->>'thread_id' = %s",
                            (thread,)).fetchone()[0] == 0
    assert thread_runs(system, thread) == []
