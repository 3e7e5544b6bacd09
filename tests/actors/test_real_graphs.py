"""The fabric running the real orchestrator and agent graphs (quadracode_ray.graphs) with the
scripted model: a task is delegated, done by an agent in its workspace, and reported back."""

from __future__ import annotations

import uuid

from actors.client import FabricClient
from quadracode_ray.envelope import TASK, TASK_RESULT, USER_MESSAGE, EnvelopeFilter
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {
    "orchestrator_graph": "quadracode_ray.graphs.orchestrator:build_orchestrator_graph",
    "agent_brain": "quadracode_ray.graphs.agent:build_agent_graph",
    "model": "scripted:default",
}


def texts(values: dict) -> list[str]:
    out = []
    for message in values.get("messages", []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            out.append(content)
    return out


async def test_delegated_task_is_done_by_an_agent_and_reported(system):
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())
    await client.run_and_wait(thread, "delegate to a coder agent: write hello.py that prints 42 and run it",
                              timeout_s=120)

    async def reported():
        values = (await client.get_state(thread))["values"]
        folded = [t for t in texts(values) if t.startswith("[task ")]
        return folded or None

    folded = await eventually(reported, timeout=120, what="the task result folded into the thread")
    assert "succeeded" in folded[0] and "42" in folded[0]
    tasks = await system.orchestrator.tasks.remote(thread)
    assert [t.status for t in tasks] == ["succeeded"]

    async def logged():
        log = await system.events.query.remote(EnvelopeFilter(thread_id=thread, kinds=[USER_MESSAGE, TASK, TASK_RESULT]))
        return sorted(e.envelope.kind for e in log)

    expected = sorted([USER_MESSAGE, TASK, TASK_RESULT])
    assert await eventually(lambda: _equal(logged(), expected), timeout=20, what="envelopes logged") == expected


async def _equal(found, expected):
    value = await found
    return value if value == expected else None
