"""The graph registry: built-ins, a langgraph.json-style file, the graphs setting, factories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.graph import START, StateGraph

from quadracode_ray.config import Settings
from runs.graph_registry import (
    GraphRegistry,
    GraphSpecError,
    GraphUnavailableError,
    graph_specs,
)

GRAPH_FILE = '''
from typing_extensions import TypedDict
from langgraph.graph import START, StateGraph

class S(TypedDict):
    n: int

builder = StateGraph(S)
builder.add_node("inc", lambda s: {"n": s["n"] + 1})
builder.add_edge(START, "inc")
graph = builder.compile()
'''


def test_graphs_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(GRAPH_FILE)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"counter": "./agent.py:graph"}}))
    settings = Settings(_env_file=None, graphs_file=tmp_path / "langgraph.json",
                        graphs={"factory": "tests.api.graphs:factory"})
    registry = GraphRegistry.from_settings(settings)
    assert {"orchestrator", "agent", "counter", "factory"} <= set(registry.ids())
    assert registry.get("counter").available
    assert registry.get("factory").is_factory


async def test_build_compiles_state_graphs_and_calls_factories_with_the_config() -> None:
    registry = GraphRegistry({"factory": ("tests.api.graphs:factory", None)})
    graph = await registry.build("factory", {"configurable": {"word": "w"}})
    assert await graph.ainvoke({"items": []}) == {"items": ["w"]}


async def test_unloadable_graph_is_kept_with_its_reason() -> None:
    registry = GraphRegistry({"broken": ("no_such_module_xyz:graph", None), "bad": ("nocolon", None)})
    assert "ModuleNotFoundError" in registry.get("broken").error
    assert "module:attr" in registry.get("bad").error
    with pytest.raises(GraphUnavailableError, match="cannot be loaded"):
        await registry.build("broken")
    with pytest.raises(GraphUnavailableError, match="not registered"):
        await registry.build("missing")


def test_malformed_graphs_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": ["not", "a", "map"]}))
    with pytest.raises(GraphSpecError, match="graphs"):
        graph_specs(Settings(_env_file=None, graphs_file=path))


# --- QUADRACODE_ORCHESTRATOR_GRAPH for API runs of the orchestrator assistant ----------------------
SEEN_BY_ORCHESTRATOR_FACTORY: list[dict] = []


def recording_orchestrator(*, fleet=None, delegation=None, settings=None):
    """An orchestrator graph factory in the shape the orchestrator actor calls: it records what it got."""
    SEEN_BY_ORCHESTRATOR_FACTORY.append({"fleet": fleet, "delegation": delegation, "settings": settings})
    builder = StateGraph(dict)
    builder.add_node("recorded", lambda state: {})
    builder.add_edge(START, "recorded")
    return builder


async def test_the_orchestrator_graph_setting_serves_api_runs_too() -> None:
    settings = Settings(_env_file=None,
                        orchestrator_graph="tests.api.test_graph_registry:recording_orchestrator")
    registry = GraphRegistry.from_settings(settings)
    entry = registry.get("orchestrator")
    assert entry.available and entry.spec == settings.orchestrator_graph
    SEEN_BY_ORCHESTRATOR_FACTORY.clear()
    fleet, delegation = object(), object()
    graph = await registry.build("orchestrator", {"configurable": {"fleet": fleet, "delegation": delegation}})
    assert "recorded" in graph.nodes
    assert SEEN_BY_ORCHESTRATOR_FACTORY == [{"fleet": fleet, "delegation": delegation, "settings": settings}]


def test_the_default_orchestrator_graph_stays_the_builtin_and_a_registered_one_wins() -> None:
    assert GraphRegistry.from_settings(Settings(_env_file=None)).get("orchestrator").spec == \
        "quadracode_ray.graphs.orchestrator:graph"
    settings = Settings(_env_file=None, orchestrator_graph="tests.api.test_graph_registry:recording_orchestrator",
                        graphs={"orchestrator": "tests.api.graphs:factory"})
    assert GraphRegistry.from_settings(settings).get("orchestrator").spec == "tests.api.graphs:factory"


async def test_an_orchestrator_graph_setting_that_does_not_load_is_reported() -> None:
    registry = GraphRegistry.from_settings(Settings(_env_file=None, orchestrator_graph="no.such.module:graph"))
    entry = registry.get("orchestrator")
    assert not entry.available and "no.such.module" in entry.error
    with pytest.raises(GraphUnavailableError, match="no.such.module"):
        await registry.build("orchestrator", {})
