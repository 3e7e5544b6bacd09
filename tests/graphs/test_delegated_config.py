"""What a delegated task carries to its agent: the delegating assistant's config for the agent's
graph (inherited fields and the ``agents`` overrides), passed by the orchestrator graph's
``delegate`` tool to its DelegationClient, and built into the agent's graph by the brain."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from actors.brains import ASSISTANT_CONFIG_KEY, TaskRequest, load_brain
from quadracode_ray.config import Settings
from quadracode_ray.graphs.assistant_config import (
    AssistantConfigError,
    delegated_task_config,
    read_assistant_config,
)
from quadracode_ray.graphs.orchestrator import graph as orchestrator_graph
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import user

HTTP = {"transport": "http", "url": "http://127.0.0.1:9/mcp", "headers": "search"}


def test_agents_inherit_the_assistants_settings_but_not_its_prompt_and_agents_fields_replace_them():
    assistant = read_assistant_config({"model": "scripted:boss", "system_prompt": "You are the boss.",
                                       "context_token_budget": 4000, "guardrails": {"max_iterations": 7},
                                       "mcp_servers": {"search": HTTP}})
    assert delegated_task_config(assistant) == {
        "model": "scripted:boss", "context_token_budget": 4000,
        "guardrails": {"max_iterations": 7},
        "mcp_servers": {"search": {**HTTP, "timeout_s": 60.0}}}
    overridden = read_assistant_config({"model": "scripted:boss", "mcp_servers": {"search": HTTP},
                                        "agents": {"model": "scripted:worker", "system_prompt": "You test.",
                                                   "mcp_servers": {}}})
    assert delegated_task_config(overridden) == {"model": "scripted:worker", "system_prompt": "You test."}
    assert delegated_task_config(read_assistant_config({})) == {}
    with pytest.raises(AssistantConfigError, match="agents.model"):
        read_assistant_config({"agents": {"model": "no-provider"}})
    with pytest.raises(AssistantConfigError, match="agents.nope"):
        read_assistant_config({"agents": {"nope": 1}})


async def test_the_delegate_tool_hands_the_assistants_agent_config_to_the_delegation_client(make_model, thread):
    fleet = FakeFleet()
    delegation = FakeDelegation(fleet)
    configurable = {"model": make_model(), "workspace": FakeWorkspace(), "fleet": fleet, "delegation": delegation,
                    "mcp_servers": {"search": HTTP}, "agents": {"system_prompt": "You look things up."}}
    built = orchestrator_graph({"configurable": configurable}).copy(update={"checkpointer": InMemorySaver()})
    await built.ainvoke(user("delegate to a coder agent: look up Ray"), thread)
    (task_id,) = delegation.tasks
    assert delegation.configs[task_id] == {"system_prompt": "You look things up.",
                                           "mcp_servers": {"search": {**HTTP, "timeout_s": 60.0}}}

    plain = FakeDelegation(fleet)
    built = orchestrator_graph({"configurable": {**configurable, "delegation": plain, "mcp_servers": {},
                                                 "agents": None}})
    await built.copy(update={"checkpointer": InMemorySaver()}).ainvoke(user("delegate to a coder agent: x"), thread)
    assert list(plain.configs.values()) == [None]  # nothing to carry: the client is called as before


def record_factory(workspace, checkpointer, model=None, system_prompt=None, tool_source=None):
    """A graph factory recording what it was built with (the built-in agent graph's arguments)."""
    from langgraph.graph import END, START, StateGraph

    built.append({"model": model, "system_prompt": system_prompt, "tool_source": tool_source})
    graph = StateGraph(dict)
    graph.add_node("n", lambda state: {"result": f"prompt={system_prompt}"})
    graph.add_edge(START, "n")
    graph.add_edge("n", END)
    return graph


built: list[dict] = []


def no_tools_factory(workspace, model=None):
    return record_factory(workspace, None, model)


async def test_an_agent_brain_builds_one_graph_per_carried_config(monkeypatch):
    built.clear()
    monkeypatch.setattr("actors.brains._chat_model", lambda settings, spec=None: f"model:{spec or 'default'}")
    settings = Settings(_env_file=None)
    brain = load_brain("tests.graphs.test_delegated_config:record_factory", settings=settings, agent_id="a1",
                       kind="coder", capabilities=[], checkpointer=lambda: _saver())

    def task(config: dict | None) -> TaskRequest:
        return TaskRequest(task_id="t1", instruction="x", parent_thread_id="p", agent_id="a1",
                           metadata={ASSISTANT_CONFIG_KEY: config} if config is not None else {})

    carried = {"model": "scripted:worker", "system_prompt": "You test.", "mcp_servers": {"search": HTTP}}
    assert (await brain.run(task(carried), FakeWorkspace())).output == "prompt=You test."
    assert (await brain.run(task(None), FakeWorkspace())).output == "prompt=None"
    assert (await brain.run(task(carried), FakeWorkspace())).output == "prompt=You test."
    assert len(built) == 2  # the first graph was kept for the third task
    assert built[0]["model"] == "model:scripted:worker" and callable(built[0]["tool_source"])
    assert built[1] == {"model": "model:default", "system_prompt": None, "tool_source": None}

    with pytest.raises(AssistantConfigError, match="context_token_budget"):  # the task fails, saying why
        await brain.run(task({"context_token_budget": 1}), FakeWorkspace())

    limited = load_brain("tests.graphs.test_delegated_config:no_tools_factory", settings=settings,
                         agent_id="a1", kind="coder", capabilities=[], checkpointer=lambda: _saver())
    with pytest.raises(TypeError, match="takes no system_prompt, tool_source"):
        await limited.run(task(carried), FakeWorkspace())


async def _saver():
    return InMemorySaver()
