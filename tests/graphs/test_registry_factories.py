"""The ``module:graph`` factories a graph registry (the API's run executor) calls per run."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver

from quadracode_ray.graphs import agent as agent_module
from quadracode_ray.graphs import orchestrator as orchestrator_module
from quadracode_ray.llm import shared_chat_model
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import user


async def test_orchestrator_factory_uses_the_clients_in_configurable(make_model, thread):
    fleet = FakeFleet()
    delegation = FakeDelegation(fleet)
    config = {"configurable": {**thread["configurable"], "model": make_model(), "workspace": FakeWorkspace(),
                               "fleet": fleet, "delegation": delegation}}
    graph = orchestrator_module.graph(config).copy(update={"checkpointer": InMemorySaver()})
    out = await graph.ainvoke(user("delegate to a coder agent: run `make test`"), config)
    assert len(delegation.tasks) == 1 and "task-1" in out["messages"][-1].content


async def test_agent_factory_with_a_model_spec_and_without_a_workspace(graph_llm_server, monkeypatch, thread):
    monkeypatch.setenv("QUADRACODE_SCRIPTED_SERVER_URL", graph_llm_server.url)
    workspace = FakeWorkspace()
    config = {"configurable": {**thread["configurable"], "model": "scripted:factory-agent", "workspace": workspace,
                               "agent_id": "coder-7"}}
    out = await agent_module.graph(config).ainvoke({"task": "write x.py that prints 5 and run it", "task_id": "t"},
                                                   config)
    assert out["result"]["output"] == "5" and out["result"]["agent_id"] == "coder-7"
    assert graph_llm_server.faults.requests["factory-agent"] == 3
    bare = {"configurable": {**thread["configurable"], "model": "scripted:factory-agent"}}
    out = await agent_module.graph(bare).ainvoke({"task": "list files", "task_id": "t2"}, {
        "configurable": {"thread_id": "other"}})
    assert out["result"]["status"] == "failed" and "no workspace" in out["result"]["output"]


async def test_shared_chat_models_are_reused_within_a_loop(make_settings):
    settings = make_settings()
    assert shared_chat_model("scripted:a", settings) is shared_chat_model("scripted:a", settings)
    assert shared_chat_model("scripted:a", settings) is not shared_chat_model("scripted:b", settings)


async def test_the_factories_build_their_model_from_the_hosts_settings_not_the_environment(
        graph_llm_server, make_settings, monkeypatch, thread):
    # The host (an actor given its Settings as an object) has no QUADRACODE_* environment: the
    # model must still reach the server its settings name (this process's default would not).
    monkeypatch.delenv("QUADRACODE_SCRIPTED_SERVER_URL", raising=False)
    settings = make_settings(scripted_server_url=graph_llm_server.url)
    for module, name, graph_input in ((orchestrator_module, "host-orchestrator", user("hello")),
                                      (agent_module, "host-agent", {"task": "say hi", "task_id": "t"})):
        config = {"configurable": {**thread["configurable"], "model": f"scripted:{name}", "host_settings": settings}}
        await module.graph(config).ainvoke(graph_input, config)
        assert graph_llm_server.faults.requests[name] >= 1, name
    # A caller's JSON under the same key is no Settings: the process's own settings apply.
    from quadracode_ray.graphs.assistant_config import host_settings

    assert host_settings({"host_settings": {"scripted_server_url": "http://elsewhere"}}).scripted_server_url is None
