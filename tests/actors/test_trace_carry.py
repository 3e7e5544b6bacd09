"""Trace context carried where a plain actor call would drop it, read back over OTLP/HTTP from
a receiver this module starts: a delegation made by a run outside the orchestrator actor (a run
executor's, through ``OrchestratorDelegation``) continues that run's trace into the agent's task,
and a streamed command (``exec_stream``) continues its caller's trace into the sandbox actor.

The callers run in an actor of their own (``Caller``) with tracing on, so this test process's
tracing stays off; it is killed at the end."""

from __future__ import annotations

import uuid

import pytest
import ray

from quadracode_ray.config import Settings
from tests.actors.conftest import eventually
from tests.actors.otlp_receiver import OtlpReceiver
from tests.conftest import free_port

PORT = free_port()
FABRIC_SETTINGS = {"otlp_endpoint": f"http://127.0.0.1:{PORT}/v1/traces"}


@pytest.fixture(scope="module")
def receiver():
    server = OtlpReceiver(PORT).start()
    yield server
    server.stop()


@ray.remote(num_cpus=0)
class Caller:
    """Does what a run executor's graph does, inside a span of its own, with tracing on."""

    def __init__(self, settings: Settings):
        from quadracode_ray import tracing

        tracing.configure_tracing(settings, "caller")
        self.settings = settings

    async def delegate(self, instruction: str, thread_id: str) -> tuple[str, str, str]:
        from actors.fabric_clients import OrchestratorDelegation
        from quadracode_ray import tracing

        with tracing.scope(thread_id=thread_id), tracing.span("executor_run") as span:
            task = await OrchestratorDelegation(self.settings).delegate(instruction, parent_thread_id=thread_id)
        tracing.flush()
        context = span.get_span_context()
        return task.task_id, format(context.trace_id, "032x"), format(context.span_id, "016x")

    async def exec_stream(self, workspace_id: str, settings: Settings) -> tuple[list, str, str]:
        from quadracode_ray import tracing
        from sandbox.client import get_workspace

        client = await get_workspace(workspace_id, settings, detached=False)
        with tracing.span("operator_request") as span:
            items = [item async for item in client.exec_stream("echo streamed")]
        tracing.flush()
        context = span.get_span_context()
        return items, format(context.trace_id, "032x"), format(context.span_id, "016x")


@pytest.fixture(scope="module")
def caller(system, fabric_settings: Settings):
    actor = Caller.remote(fabric_settings)
    yield actor
    ray.kill(actor, no_restart=True)


def _in_trace(receiver: OtlpReceiver, trace_id: str) -> list[dict]:
    return [s for s in receiver.spans() if s["trace_id"] == trace_id]


async def test_a_delegation_from_outside_the_orchestrator_continues_the_callers_trace(receiver, caller, system):
    thread = str(uuid.uuid4())
    task_id, trace_id, root_id = await caller.delegate.remote("note the weather", thread)

    async def task_span():
        spans = _in_trace(receiver, trace_id)
        return next((s for s in spans if s["name"] == "agent_task"), None)

    task = await eventually(task_span, timeout=60, what="the agent's task span in the caller's trace")
    assert task["parent_id"] == root_id  # under the caller's run, across orchestrator and agent
    assert task["attributes"]["task.id"] == task_id and task["attributes"]["thread.id"] == thread
    assert task["service"] == "agent"


@pytest.mark.docker
async def test_a_streamed_command_continues_the_callers_trace_in_the_sandbox(receiver, caller, system,
                                                                           fabric_settings: Settings):
    from sandbox.client import get_workspace
    from sandbox.testing import remove_installation

    installation = f"t{uuid.uuid4().hex[:10]}"
    settings = fabric_settings.model_copy(update={
        "sandbox_installation_id": installation, "sandbox_memory_mb": 256, "sandbox_idle_stop_s": 0})
    workspace_id = f"trace-{uuid.uuid4().hex[:6]}"
    try:
        items, trace_id, root_id = await caller.exec_stream.remote(workspace_id, settings)
        assert items[-1].exit_code == 0 and "streamed" in items[-1].stdout

        async def stream_span():
            return next((s for s in _in_trace(receiver, trace_id) if s["name"] == "sandbox exec_stream"), None)

        span = await eventually(stream_span, timeout=60, what="the sandbox's exec_stream span in the caller's trace")
        assert span["parent_id"] == root_id and span["service"] == "sandbox"
        assert span["attributes"]["workspace.id"] == workspace_id
    finally:
        client = await get_workspace(workspace_id, settings, detached=False)
        await client.destroy(remove_volume=True)
        ray.kill(client.handle, no_restart=True)
        remove_installation(installation)
