"""The orchestrator graph with fakes: answers, non-blocking delegation, folding results in."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from quadracode_ray.graphs import TASK_RESULT_NAME, build_orchestrator_graph
from quadracode_ray.interfaces import AgentInfo
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import user


def _orchestrator(make_model, **kwargs):
    fleet = kwargs.pop("fleet", None) or FakeFleet()
    delegation = FakeDelegation(fleet)
    graph = build_orchestrator_graph(model=make_model(), workspace=FakeWorkspace(), fleet=fleet,
                                     delegation=delegation, checkpointer=InMemorySaver(), **kwargs)
    return graph, fleet, delegation


async def test_answers_directly_without_tools(make_model, thread):
    graph, fleet, delegation = _orchestrator(make_model)
    out = await graph.ainvoke(user("remember the code name HERON"), thread)
    assert out["messages"][-1].content == "Noted: the code name is HERON."
    assert fleet.agents == {} and delegation.tasks == {}


async def test_delegation_returns_at_once_and_a_later_result_folds_in(make_model, thread):
    graph, fleet, delegation = _orchestrator(make_model)
    out = await graph.ainvoke(user("delegate to a coder agent: write hello.py that prints 42 and run it"), thread)
    (task,) = delegation.tasks.values()
    assert task.status == "pending" and task.parent_thread_id == thread["configurable"]["thread_id"]
    assert task.instruction == "write hello.py that prints 42 and run it" and task.agent_id in fleet.agents
    assert out["tasks"][task.task_id]["status"] == "pending"
    assert task.task_id in out["messages"][-1].content
    assert (await graph.aget_state(thread)).next == ()  # the run ended: nothing waits on the agent

    result = delegation.complete(task.task_id, "42", artifacts=["hello.py"])
    events = [e async for e in graph.astream({"task_results": [result.model_dump()]}, thread,
                                             stream_mode=["custom", "values"])]
    custom = [payload for mode, payload in events if mode == "custom"]
    assert {"event": "task_result", "result": result.model_dump(mode="json")} in custom
    final = [payload for mode, payload in events if mode == "values"][-1]
    folded = [m for m in final["messages"] if isinstance(m, HumanMessage) and m.name == TASK_RESULT_NAME]
    assert len(folded) == 1 and folded[0].content.startswith(f"[task {task.task_id} succeeded by agent")
    assert final["messages"][-1].content.endswith("succeeded: 42\nartifacts: hello.py")
    assert final["tasks"][task.task_id]["status"] == "succeeded" and final["task_results"] == []


async def test_bad_task_results_raise_and_change_nothing(make_model, thread):
    graph, _, _ = _orchestrator(make_model)
    await graph.ainvoke(user("hello"), thread)
    before = (await graph.aget_state(thread)).values
    with pytest.raises(ValidationError):
        await graph.ainvoke({"task_results": [{"task_id": "x", "status": "exploded"}]}, thread)
    after = (await graph.aget_state(thread)).values
    assert after["messages"] == before["messages"]


async def test_fleet_tools_list_kill_check_and_cancel(make_model, thread):
    fleet = FakeFleet(agents=[AgentInfo(agent_id="hot-1", kind="coder", hotpath=True)])
    graph, fleet, delegation = _orchestrator(make_model, fleet=fleet)
    out = await graph.ainvoke(user("list agents"), thread)
    assert "hot-1" in out["messages"][-1].content
    out = await graph.ainvoke(user("kill agent hot-1"), thread)
    assert "hotpath" in out["messages"][-1].content and "hot-1" in fleet.agents  # refused without force
    task = await delegation.delegate("x", parent_thread_id="p")
    out = await graph.ainvoke(user(f"cancel task {task.task_id}"), thread)
    assert delegation.tasks[task.task_id].status == "cancelled"
    assert out["tasks"][task.task_id]["status"] == "cancelled"
    out = await graph.ainvoke(user(f"check task {task.task_id}"), thread)
    assert '"status":"cancelled"' in out["messages"][-1].content


async def test_uses_its_own_workspace(make_model, thread):
    graph, _, _ = _orchestrator(make_model)
    out = await graph.ainvoke(user("write hi.sh that prints hi and run it"), thread)
    assert out["messages"][-1].content == "hi" and out["artifacts"] == ["hi.sh"]
