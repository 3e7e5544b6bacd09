"""The agent graph with the scripted model (over HTTP) and an in-memory workspace."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from quadracode_ray.graphs import build_agent_graph
from quadracode_ray.interfaces import TaskResult
from quadracode_ray.testing import FakeWorkspace


async def test_hello_py_is_written_run_and_reported(make_model, thread):
    workspace = FakeWorkspace()
    graph = build_agent_graph(model=make_model(), workspace=workspace, agent_id="coder-1")
    out = await graph.ainvoke({"task": "write hello.py that prints 42 and run it", "task_id": "t-1"}, thread)
    result = TaskResult.model_validate(out["result"])
    assert (result.task_id, result.agent_id, result.status, result.output) == ("t-1", "coder-1", "succeeded", "42")
    assert result.artifacts == ["hello.py"]
    assert workspace.files["hello.py"] == b"print(42)\n"
    assert workspace.commands == ["python3 hello.py"]


async def test_a_failing_command_fails_the_task(make_model, thread):
    graph = build_agent_graph(model=make_model(), workspace=FakeWorkspace())
    out = await graph.ainvoke({"task": "run `no-such-tool --version`", "task_id": "t-2"}, thread)
    assert out["result"]["status"] == "failed"
    assert "command not found" in out["result"]["error"]


async def test_plain_instructions_finish_with_an_answer(make_model, thread):
    graph = build_agent_graph(model=make_model("agent-plain", protocol="anthropic"), workspace=FakeWorkspace())
    out = await graph.ainvoke({"task": "say hello", "task_id": "t-3"}, thread)
    assert out["result"]["status"] == "succeeded" and "say hello" in out["result"]["output"]


async def test_streams_tokens_and_tool_steps_as_custom_events(make_model, thread):
    graph = build_agent_graph(model=make_model(), workspace=FakeWorkspace())
    events = [e async for e in graph.astream({"task": "write a.py that prints 7 and run it"}, thread,
                                             stream_mode="custom")]
    kinds = [e["event"] for e in events]
    assert kinds.count("tool_start") == 2 and kinds.count("tool_end") == 2
    assert [e["name"] for e in events if e["event"] == "tool_start"] == ["write_file", "exec"]
    assert any(e["event"] == "tool_end" and '"stdout": "7\\n"' in e["content"] for e in events)


async def test_ask_human_interrupts_and_resumes_with_the_answer(make_model, thread):
    workspace = FakeWorkspace()
    graph = build_agent_graph(model=make_model(), workspace=workspace, checkpointer=InMemorySaver())
    out = await graph.ainvoke({"task": "ask me which file name to use", "task_id": "t-4"}, thread)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "question" and pending.value["question"] == "which file name to use"
    assert (await graph.aget_state(thread)).next == ("tools",)
    out = await graph.ainvoke(Command(resume="notes.txt"), thread)
    assert out["result"]["status"] == "succeeded" and "notes.txt" in out["result"]["output"]


async def test_invalid_tool_arguments_come_back_as_errors(make_model, thread):
    workspace = FakeWorkspace()
    graph = build_agent_graph(model=make_model(), workspace=workspace)
    out = await graph.ainvoke({"task": "read ../../etc/passwd.txt"}, thread)
    tool_message = next(m for m in out["messages"] if m.type == "tool")
    assert tool_message.status == "error" and "PathEscapeError" in tool_message.content
    assert out["result"]["status"] == "failed"


async def test_messages_stream_mode_carries_token_chunks_then_no_duplicate(make_model, thread):
    from langchain_core.messages import AIMessage, AIMessageChunk

    from quadracode_ray.graphs import build_orchestrator_graph

    graph = build_orchestrator_graph(model=make_model(), workspace=None, fleet=None, delegation=None)
    prompt = "tell me a long enough story to need several chunks of text"
    items = [item async for item in graph.astream({"messages": [{"role": "user", "content": prompt}]}, thread,
                                                  stream_mode="messages")]
    chunks = [m for m, meta in items if isinstance(m, AIMessageChunk)]
    assert len(chunks) > 1 and all(meta["langgraph_node"] == "model" for _, meta in items)
    assert "".join(c.content for c in chunks) == f"Scripted model reply to: {prompt}"
    assert not [m for m, _ in items if isinstance(m, AIMessage) and not isinstance(m, AIMessageChunk)]
    assert len({c.id for c in chunks}) == 1


async def test_the_per_run_factory_takes_prompt_and_context_budget_from_the_configurable(make_model):
    """Two assistants of the `agent` graph differ by their config (as in notebooks/06_experiment)."""
    from quadracode_ray.graphs.agent import graph as agent_graph
    from quadracode_ray.graphs.assistant_config import AssistantConfigError

    async def prompt_tokens(**configurable) -> list[int]:
        config = {"configurable": {"model": make_model(), "workspace": FakeWorkspace(), **configurable}}
        out = await agent_graph(config).ainvoke({"task": "write hello.py that prints 42 and run it"})
        assert out["result"]["status"] == "succeeded" and out["result"]["output"] == "42"
        return [m.usage_metadata["input_tokens"] for m in out["messages"] if getattr(m, "usage_metadata", None)]

    default = await prompt_tokens()
    terse = await prompt_tokens(system_prompt="Do the task; call finish.")
    assert len(default) == len(terse) == 3  # write, exec, finish
    assert all(t < d for t, d in zip(terse, default, strict=True))
    assert len(await prompt_tokens(context_token_budget=400)) == 3
    with pytest.raises(AssistantConfigError, match="token_budget"):  # the budget is read, and validated
        agent_graph({"configurable": {"model": make_model(), "context_token_budget": 10}})
