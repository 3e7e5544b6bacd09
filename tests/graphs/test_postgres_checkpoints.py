"""The graphs on the real Postgres checkpointer (AsyncPostgresSaver over a psycopg pool)."""

from __future__ import annotations

import uuid

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command

from quadracode_ray.graphs import (
    Guardrails,
    NamespacedSaver,
    build_agent_graph,
    build_orchestrator_graph,
    task_thread_id,
)
from quadracode_ray.interfaces import TaskResult
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import user


@pytest.fixture(scope="module")
async def pool(database_url):
    pool = await open_async_pool(database_url, min_size=1, max_size=4, name="graphs-tests")
    yield pool
    await pool.close()


@pytest.fixture
async def saver(pool) -> AsyncPostgresSaver:
    return AsyncPostgresSaver(pool)  # tables exist: prepare_database migrated the template


def _orchestrator(model, saver, **kwargs):
    fleet = kwargs.pop("fleet", None) or FakeFleet()
    return build_orchestrator_graph(model=model, workspace=kwargs.pop("workspace", None) or FakeWorkspace(),
                                    fleet=fleet, delegation=kwargs.pop("delegation", None) or FakeDelegation(fleet),
                                    checkpointer=saver, **kwargs)


async def test_code_name_survives_a_fresh_graph_on_the_same_thread(make_model, pool, thread):
    first = _orchestrator(make_model(), AsyncPostgresSaver(pool))
    await first.ainvoke(user("Remember the code name NIGHTJAR."), thread)
    await first.ainvoke(user("now something else entirely"), thread)
    # A new model client, saver and graph: only Postgres carries the memory.
    second = _orchestrator(make_model(protocol="anthropic"), AsyncPostgresSaver(pool))
    out = await second.ainvoke(user("What is the code name?"), thread)
    assert out["messages"][-1].content == "The code name is NIGHTJAR."


async def test_assistants_sharing_a_thread_id_never_collide(make_model, saver, thread):
    orchestrator = _orchestrator(make_model(), saver, namespace="orchestrator")
    other = _orchestrator(make_model(), saver, namespace="orchestrator-b")
    agent = build_agent_graph(model=make_model(), workspace=FakeWorkspace(), checkpointer=saver, namespace="agent")
    await orchestrator.ainvoke(user("remember the code name WREN"), thread)
    await agent.ainvoke({"task": "say hi", "task_id": "t"}, thread)
    out = await other.ainvoke(user("what is the code name?"), thread)
    assert out["messages"][-1].content == "I have not been told a code name."
    state = (await orchestrator.aget_state(thread)).values
    assert [m.content for m in state["messages"]] == ["remember the code name WREN", "Noted: the code name is WREN."]
    assert (await agent.aget_state(thread)).values["result"]["output"].endswith("say hi")
    history = [c async for c in orchestrator.checkpointer.alist(thread)]
    assert history and all(c.config["configurable"]["thread_id"] == thread["configurable"]["thread_id"]
                           for c in history)
    await other.checkpointer.adelete_thread(thread["configurable"]["thread_id"])
    assert (await other.aget_state(thread)).values == {}
    assert len((await orchestrator.aget_state(thread)).values["messages"]) == 2


async def test_interrupt_resumes_on_a_fresh_graph_instance(make_model, pool, thread):
    workspace = FakeWorkspace()
    graph = _orchestrator(make_model(), AsyncPostgresSaver(pool), workspace=workspace,
                          guardrails=Guardrails(max_iterations=2))
    out = await graph.ainvoke(user("keep running `echo again`"), thread)
    assert out["__interrupt__"][0].value["type"] == "guardrail" and len(workspace.commands) == 2
    fresh = _orchestrator(make_model(), AsyncPostgresSaver(pool), workspace=workspace)
    out = await fresh.ainvoke(Command(resume="stop"), thread)
    assert out["stopped"] is True and out["messages"][-1].content.startswith("Stopped (guardrail")


async def test_hello_py_delegated_to_an_agent_on_its_own_thread(make_model, saver):
    fleet = FakeFleet()
    delegation = FakeDelegation(fleet)
    workspace = FakeWorkspace("default")
    orchestrator = _orchestrator(make_model(), saver, fleet=fleet, delegation=delegation, workspace=workspace)
    thread = {"configurable": {"thread_id": f"user-{uuid.uuid4().hex[:8]}"}}
    out = await orchestrator.ainvoke(user("delegate to a coder agent: write hello.py that prints 42 and run it"),
                                     thread)
    (task,) = delegation.tasks.values()
    assert task.task_id in out["messages"][-1].content

    # What the agent actor does: run the agent graph for the task on the task's own thread.
    agent = build_agent_graph(model=make_model(), workspace=workspace, checkpointer=saver, agent_id=task.agent_id)
    task_thread = {"configurable": {"thread_id": task_thread_id(task.task_id)}}
    done = await agent.ainvoke({"task": task.instruction, "task_id": task.task_id}, task_thread)
    result = TaskResult.model_validate(done["result"])
    assert result.output == "42" and result.status == "succeeded" and workspace.files["hello.py"]

    out = await orchestrator.ainvoke({"task_results": [result.model_dump()]}, thread)
    assert out["messages"][-1].content.startswith(f"Task {task.task_id} (agent {task.agent_id}) succeeded: 42")
    # The task kept its own thread: its result is there, not in the parent's checkpoints.
    assert (await agent.aget_state(task_thread)).values["result"]["output"] == "42"
    assert "result" not in (await orchestrator.aget_state(thread)).values


async def test_without_a_namespace_runners_share_the_thread(make_model, saver, pool, thread):
    """The API's run executor and the orchestrator actor each attach their own saver: with no
    namespace (the default) both see one conversation per thread id."""
    api_side = _orchestrator(make_model(), saver)
    await api_side.ainvoke(user("remember the code name EGRET"), thread)
    actor_side = _orchestrator(make_model(), AsyncPostgresSaver(pool))
    out = await actor_side.ainvoke(user("what is the code name?"), thread)
    assert out["messages"][-1].content == "The code name is EGRET."
    probe = [c async for c in saver.alist(thread, limit=1)]  # raw probes (run retries) see it
    assert probe and probe[0].config["configurable"]["thread_id"] == thread["configurable"]["thread_id"]


async def test_namespaced_listing_sees_only_its_own_threads(make_model, saver):
    graph = _orchestrator(make_model(), saver, namespace="listing-a")
    other = _orchestrator(make_model(), saver, namespace="listing-b")
    mine = {"configurable": {"thread_id": f"mine-{uuid.uuid4().hex[:6]}"}}
    await graph.ainvoke(user("hello"), mine)
    await other.ainvoke(user("hello"), {"configurable": {"thread_id": f"theirs-{uuid.uuid4().hex[:6]}"}})
    listed = {c.config["configurable"]["thread_id"] async for c in NamespacedSaver(saver, "listing-a").alist(None)}
    assert listed == {mine["configurable"]["thread_id"]}
    with pytest.raises(ValueError):
        NamespacedSaver(saver, "bad::name")
