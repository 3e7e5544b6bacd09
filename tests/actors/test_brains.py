"""Agent brains without Ray: the script brain, graph adaptation, and loading by import path."""

from __future__ import annotations

import pytest
from langgraph.graph import END, START, StateGraph

from actors.brains import AgentBrain, GraphBrain, ScriptBrain, TaskRequest, load_brain
from actors.common import ImportPathError
from quadracode_ray.config import Settings
from quadracode_ray.testing import FakeWorkspace


def task(instruction: str) -> TaskRequest:
    return TaskRequest(task_id="t1", instruction=instruction, parent_thread_id="p", agent_id="a1")


async def test_script_brain_works_only_through_the_workspace():
    workspace = FakeWorkspace()
    result = await ScriptBrain().run(task("write hello.py: print(42)\nrun: python3 hello.py\nnote to self"),
                                     workspace)
    assert result.status == "succeeded"
    assert result.output == "wrote hello.py\n42\nnote to self\n"
    assert result.artifacts == ["hello.py"] and workspace.commands == ["python3 hello.py"]
    failed = await ScriptBrain().run(task("run: false"), workspace)
    assert failed.status == "failed" and "exited 1" in failed.error


def _graph_with_result(result):
    def node(state):
        return {"result": result}

    graph = StateGraph(dict)
    graph.add_node("n", node)
    graph.add_edge(START, "n")
    graph.add_edge("n", END)
    return graph


async def test_graph_brain_maps_the_graph_result_to_a_task_result():
    brain = GraphBrain(lambda _ws, _saver, _assistant: _graph_with_result({"status": "failed", "output": "half", "error": "boom",
                                                        "artifacts": ["x.txt"]}).compile())
    result = await brain.run(task("do it"), FakeWorkspace())
    assert (result.task_id, result.agent_id, result.status, result.output, result.error, result.artifacts) == \
        ("t1", "a1", "failed", "half", "boom", ["x.txt"])


def build_graph_factory(workspace, model=None):
    assert workspace is not None and model == "fake-model"
    return _graph_with_result("from the factory")


async def test_load_brain_by_import_path(monkeypatch):
    settings = Settings(_env_file=None)
    common = {"settings": settings, "agent_id": "a1", "kind": "coder", "capabilities": []}
    assert isinstance(load_brain("actors.brains:build_script_brain", **common), ScriptBrain)
    monkeypatch.setattr("actors.brains._chat_model", lambda settings, spec=None: "fake-model")
    brain = load_brain("tests.actors.test_brains:build_graph_factory", **common)
    assert isinstance(brain, GraphBrain) and isinstance(brain, AgentBrain)
    assert (await brain.run(task("x"), FakeWorkspace())).output == "from the factory"
    with pytest.raises(ImportPathError, match="no attribute"):
        load_brain("actors.brains:nope", **common)
    with pytest.raises(ImportPathError, match="module:attr"):
        load_brain("not-a-path", **common)


async def test_loaded_graphs_are_checkpointed_by_the_given_saver_under_the_task_thread(monkeypatch):
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()

    async def checkpointer():
        return saver

    settings = Settings(_env_file=None)
    monkeypatch.setattr("actors.brains._chat_model", lambda settings, spec=None: "fake-model")
    brain = load_brain("tests.actors.test_brains:build_graph_factory", settings=settings, agent_id="a1",
                       kind="coder", capabilities=[], checkpointer=checkpointer)
    request = task("x")
    assert (await brain.run(request, FakeWorkspace())).output == "from the factory"
    assert brain.graph.checkpointer is saver
    stored = saver.get_tuple({"configurable": {"thread_id": f"task:{request.task_id}:{request.attempt}"}})
    assert stored is not None and "from the factory" in str(stored.checkpoint["channel_values"])
