"""Context management: prompts within a token budget, bounded tool outputs, nothing lost."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from quadracode_ray.graphs import ContextPolicy, build_orchestrator_graph, fit_to_budget
from quadracode_ray.graphs.context import estimate_tokens
from quadracode_ray.interfaces import ExecResult
from quadracode_ray.testing import FakeWorkspace
from quadracode_ray.tools.output import bound_output
from tests.graphs.conftest import user

SYSTEM = [SystemMessage("You are helpful.")]


def _conversation(turns: int) -> list:
    messages = [HumanMessage("Remember the code name OSPREY."), AIMessage("Noted.")]
    for i in range(turns):
        call = {"id": f"c{i}", "name": "exec", "args": {"command": f"echo {i}"}}
        messages += [HumanMessage(f"step {i}: " + "please do the thing " * 20),
                     AIMessage("", tool_calls=[call]),
                     ToolMessage("x" * 400, tool_call_id=f"c{i}", name="exec"),
                     AIMessage(f"done {i}")]
    return messages


def test_small_conversations_are_sent_whole():
    messages = _conversation(2)
    assert fit_to_budget(SYSTEM, messages, ContextPolicy(token_budget=10_000)) == [*SYSTEM, *messages]


def test_older_turns_are_summarised_at_turn_boundaries_within_budget():
    messages = _conversation(40)
    policy = ContextPolicy(token_budget=1500)
    prompt = fit_to_budget(SYSTEM, messages, policy)
    assert sum(estimate_tokens(m) for m in prompt) <= policy.token_budget
    assert prompt[0] is SYSTEM[0]
    summary = prompt[1]
    assert isinstance(summary, SystemMessage) and summary.content.startswith("Summary of")
    recent = prompt[2:]
    assert isinstance(recent[0], HumanMessage) and recent == messages[-len(recent):]
    assert recent[-1].content == "done 39"
    calls = {c["id"] for m in recent if isinstance(m, AIMessage) for c in m.tool_calls}
    results = {m.tool_call_id for m in recent if isinstance(m, ToolMessage)}
    assert calls == results  # no tool call separated from its result


def test_the_summary_keeps_early_facts_when_it_fits():
    prompt = fit_to_budget(SYSTEM, _conversation(12), ContextPolicy(token_budget=2000))
    assert "Remember the code name OSPREY." in prompt[1].content


def test_one_huge_turn_has_its_tool_outputs_shrunk():
    call = {"id": "c1", "name": "exec", "args": {"command": "cat big"}}
    messages = [HumanMessage("show big"), AIMessage("", tool_calls=[call]),
                ToolMessage("y" * 50_000, tool_call_id="c1", name="exec")]
    prompt = fit_to_budget(SYSTEM, messages, ContextPolicy(token_budget=2000))
    assert sum(estimate_tokens(m) for m in prompt) <= 2000
    assert "characters left out of the prompt" in prompt[-1].content
    assert messages[-1].content == "y" * 50_000  # the state itself is untouched


async def test_large_outputs_are_written_to_the_workspace_and_referenced():
    workspace = FakeWorkspace()
    text = "".join(f"line {i}\n" for i in range(5000))
    bounded = await bound_output(text, workspace=workspace, policy=ContextPolicy(tool_result_max_chars=1000),
                                 name="exec-c1")
    assert len(bounded) < 1200 and ".quadracode/outputs/exec-c1.txt" in bounded
    assert bounded.startswith("line 0\n") and bounded.rstrip().endswith("line 4999")
    assert workspace.files[".quadracode/outputs/exec-c1.txt"].decode() == text


async def test_exec_output_is_offloaded_inside_a_graph(make_model, thread):
    workspace = FakeWorkspace()
    big = "".join(f"row {i}\n" for i in range(20_000))
    workspace.on_command("generate", lambda cmd: ExecResult(exit_code=0, stdout=big, stderr="", duration_ms=1))
    graph = build_orchestrator_graph(model=make_model(), workspace=workspace, fleet=None, delegation=None,
                                     context=ContextPolicy(tool_result_max_chars=4000))
    out = await graph.ainvoke(user("run `generate`"), thread)
    result = json.loads(next(m for m in out["messages"] if isinstance(m, ToolMessage)).content)
    (saved,) = [p for p in workspace.files if p.startswith(".quadracode/outputs/")]
    assert saved in result["stdout"] and len(result["stdout"]) < 2500
    assert workspace.files[saved].decode() == big


async def test_a_long_thread_stays_in_budget_and_remembers(make_model, thread):
    graph = build_orchestrator_graph(model=make_model(), workspace=FakeWorkspace(), fleet=None, delegation=None,
                                     checkpointer=InMemorySaver(), context=ContextPolicy(token_budget=1200))
    await graph.ainvoke(user("remember the code name PELICAN"), thread)
    for i in range(25):
        await graph.ainvoke(user(f"message {i}: " + "some filler text to make the history long " * 5), thread)
    out = await graph.ainvoke(user("what is the code name?"), thread)
    assert out["messages"][-1].content == "The code name is PELICAN."
    assert out["messages"][-1].usage_metadata["input_tokens"] < 1500  # the prompt, not the 2000+ token history
    assert sum(estimate_tokens(m) for m in out["messages"]) > 2000
