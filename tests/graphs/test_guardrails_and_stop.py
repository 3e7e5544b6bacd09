"""Autonomous-mode guardrails, the emergency stop (also mid-run) and human-in-the-loop resumes."""

from __future__ import annotations

import asyncio
import time

from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from quadracode_ray.graphs import (
    Guardrails,
    StopRegistry,
    build_agent_graph,
    build_orchestrator_graph,
)
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import poll, user


def _orchestrator(model, *, workspace=None, guardrails=None, stop=None):
    fleet = FakeFleet()
    return build_orchestrator_graph(model=model, workspace=workspace or FakeWorkspace(), fleet=fleet,
                                    delegation=FakeDelegation(fleet), checkpointer=InMemorySaver(),
                                    guardrails=guardrails, stop=stop)


async def test_iteration_guardrail_halts_and_asks_the_human(make_model, thread):
    workspace = FakeWorkspace()
    graph = _orchestrator(make_model(), workspace=workspace, guardrails=Guardrails(max_iterations=3))
    out = await graph.ainvoke(user("keep running `echo tick`"), thread)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "guardrail" and "3 model iterations" in pending.value["reason"]
    assert pending.value["options"] == ["continue", "stop"]
    assert workspace.commands == ["echo tick"] * 3
    # "continue" grants a fresh budget: three more iterations, then it asks again.
    out = await graph.ainvoke(Command(resume="continue"), thread)
    assert out["__interrupt__"][0].value["type"] == "guardrail" and len(workspace.commands) == 6
    out = await graph.ainvoke(Command(resume="stop"), thread)
    assert "__interrupt__" not in out and out["stopped"] is True
    assert out["messages"][-1].content.startswith("Stopped (guardrail")
    assert (await graph.aget_state(thread)).next == ()


async def test_wall_clock_guardrail(make_model, thread):
    graph = _orchestrator(make_model(), guardrails=Guardrails(max_wall_clock_s=60))
    await graph.ainvoke(user("hello"), thread)
    await graph.aupdate_state(thread, {"autonomy_started_at": time.time() - 3600})
    # An agent's result is not human input: the autonomy clock keeps running and trips.
    out = await graph.ainvoke({"task_results": [{"task_id": "t", "agent_id": "a", "status": "succeeded"}]}, thread)
    assert out["__interrupt__"][0].value["type"] == "guardrail" and "without human input" in out["__interrupt__"][0].value["reason"]
    # A new instruction given at the halt continues with it.
    out = await graph.ainvoke(Command(resume="remember the code name KITE"), thread)
    assert out["messages"][-1].content == "Noted: the code name is KITE."


async def test_agents_per_thread_guardrail(make_model, thread):
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_model(), workspace=None, fleet=fleet, delegation=None,
                                     checkpointer=InMemorySaver(), guardrails=Guardrails(max_agents_per_thread=1))
    await graph.ainvoke(user("spawn a coder agent"), thread)
    assert len(fleet.agents) == 1
    out = await graph.ainvoke(user("spawn a tester agent"), thread)
    assert "agents for this thread" in out["__interrupt__"][0].value["reason"]
    assert len(fleet.agents) == 1  # nothing was spawned while the human decides
    out = await graph.ainvoke(Command(resume={"action": "continue"}), thread)
    assert len(fleet.agents) == 2 and "tester" in out["messages"][-1].content


async def test_emergency_stop_mid_tool_halts_at_once(make_model, thread):
    workspace = FakeWorkspace()
    stop = StopRegistry()
    graph = _orchestrator(make_model(), workspace=workspace, stop=stop)
    run = asyncio.create_task(graph.ainvoke(user("run `sleep 600`"), thread))
    await asyncio.wait_for(workspace.exec_started.wait(), 10)
    stop.stop(thread["configurable"]["thread_id"])
    out = await asyncio.wait_for(run, 10)
    assert out["__interrupt__"][0].value["type"] == "emergency_stop"
    cancelled = [m for m in out["messages"] if isinstance(m, ToolMessage)][-1]
    assert cancelled.status == "error" and "emergency stop" in cancelled.content
    out = await graph.ainvoke(Command(resume="continue"), thread)  # resuming clears the stop
    assert not stop.is_set(thread["configurable"]["thread_id"])
    assert "__interrupt__" not in out and "exec step failed" in out["messages"][-1].content


async def test_emergency_stop_mid_model_call(make_model, graph_llm_server, thread):
    stop = StopRegistry()
    model = make_model("stalling-model")
    graph = _orchestrator(model, stop=stop)
    graph_llm_server.inject_stall("stalling-model", 600)
    seen = graph_llm_server.faults.requests["stalling-model"]
    run = asyncio.create_task(graph.ainvoke(user("hello"), thread))
    await poll(lambda: graph_llm_server.faults.requests["stalling-model"] > seen, what="the model request")
    stop.stop(thread["configurable"]["thread_id"])
    out = await asyncio.wait_for(run, 10)
    assert out["__interrupt__"][0].value == {
        "type": "emergency_stop", "reason": "emergency stop during a model call",
        "thread_id": thread["configurable"]["thread_id"], "options": ["continue", "stop"]}
    out = await graph.ainvoke(Command(resume="stop"), thread)
    assert out["stopped"] is True


async def test_stop_before_a_run_makes_no_model_call(make_model, graph_llm_server, thread):
    stop = StopRegistry()
    stop.stop(thread["configurable"]["thread_id"])
    graph = _orchestrator(make_model("never-called"), stop=stop)
    out = await graph.ainvoke(user("hello"), thread)
    assert out["__interrupt__"][0].value["type"] == "emergency_stop"
    assert graph_llm_server.faults.requests["never-called"] == 0


async def test_stopped_agent_reports_a_cancelled_result(make_model, thread):
    stop = StopRegistry()
    workspace = FakeWorkspace()
    graph = build_agent_graph(model=make_model(), workspace=workspace, checkpointer=InMemorySaver(), stop=stop)
    run = asyncio.create_task(graph.ainvoke({"task": "keep running `sleep 600`", "task_id": "t-9"}, thread))
    await asyncio.wait_for(workspace.exec_started.wait(), 10)
    stop.stop(thread["configurable"]["thread_id"])
    assert (await asyncio.wait_for(run, 10))["__interrupt__"][0].value["type"] == "emergency_stop"
    out = await graph.ainvoke(Command(resume="stop"), thread)
    assert out["result"]["status"] == "cancelled" and out["result"]["task_id"] == "t-9"


async def test_ask_human_from_the_orchestrator(make_model, thread):
    graph = _orchestrator(make_model())
    out = await graph.ainvoke(user("ask me what colour the logo should be"), thread)
    assert out["__interrupt__"][0].value["question"] == "what colour the logo should be"
    out = await graph.ainvoke(Command(resume="teal"), thread)
    assert "teal" in out["messages"][-1].content


async def test_provider_failure_halts_the_thread_instead_of_failing_it(make_model, graph_llm_server, thread):
    graph = _orchestrator(make_model("flaky-provider"))
    graph_llm_server.inject_faults("flaky-provider", [401])  # e.g. a revoked key: never retried
    out = await graph.ainvoke(user("hello"), thread)
    halt = out["__interrupt__"][0].value
    assert halt["type"] == "model_error" and "HTTP 401" in halt["reason"]
    out = await graph.ainvoke(Command(resume="continue"), thread)  # fixed: try again
    assert out["messages"][-1].content == "Scripted model reply to: hello"


async def test_new_input_at_a_halt_closes_the_open_tool_calls(make_model, thread):
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_model(), workspace=None, fleet=fleet, delegation=None,
                                     checkpointer=InMemorySaver(), guardrails=Guardrails(max_agents_per_thread=0))
    out = await graph.ainvoke(user("spawn a coder agent"), thread)
    assert out["__interrupt__"][0].value["type"] == "guardrail"
    out = await graph.ainvoke(user("remember the code name LARK"), thread)  # a new turn, not a resume
    kinds = [(m.type, getattr(m, "name", None)) for m in out["messages"]]
    assert kinds[-4:] == [("ai", None), ("tool", "spawn_agent"), ("human", None), ("ai", None)]
    assert "skipped" in out["messages"][-3].content and fleet.agents == {}
    assert out["messages"][-1].content == "Noted: the code name is LARK."


def test_guardrails_and_context_come_from_settings(make_settings):
    from quadracode_ray.graphs.context import context_policy_from_settings

    settings = make_settings(autonomy_max_iterations=7, autonomy_max_hours=0.5, autonomy_max_agents_per_thread=2,
                             context_token_budget=5000)
    assert Guardrails.from_settings(settings) == Guardrails(max_iterations=7, max_wall_clock_s=1800,
                                                            max_agents_per_thread=2)
    assert context_policy_from_settings(settings).token_budget == 5000


async def test_a_run_halts_before_langgraph_recursion_limit(make_model, thread):
    workspace = FakeWorkspace()
    graph = _orchestrator(make_model(), workspace=workspace)
    config = {**thread, "recursion_limit": 12}
    out = await graph.ainvoke(user("keep running `echo step`"), config)  # would raise GraphRecursionError
    assert out["__interrupt__"][0].value["type"] == "guardrail"
    assert "recursion_limit" in out["__interrupt__"][0].value["reason"]
    first = len(workspace.commands)
    assert first >= 3
    out = await graph.ainvoke(Command(resume="continue"), config)
    assert "recursion_limit" in out["__interrupt__"][0].value["reason"] and len(workspace.commands) > first
