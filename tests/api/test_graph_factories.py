"""Graph factories are called as the official server calls them: config, runtime, or both."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from langgraph.store.memory import InMemoryStore
from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime

from runs.graph_factories import call_factory, factory_arguments

if TYPE_CHECKING:
    from langgraph_sdk.runtime import ServerRuntime


async def test_a_two_parameter_factory_gets_the_config_and_an_execution_runtime() -> None:
    seen = {}

    async def make_graph(config: dict, runtime: ServerRuntime):
        seen.update(config=config, runtime=runtime)
        return "graph"

    store = InMemoryStore()
    assert await call_factory(make_graph, {"configurable": {"x": 1}}, access_context="threads.create_run",
                              store=store, context={"user": "u"}) == "graph"
    assert seen["config"] == {"configurable": {"x": 1}}
    runtime = seen["runtime"]
    assert isinstance(runtime, _ExecutionRuntime) and runtime.execution_runtime is runtime
    assert runtime.store is store and runtime.context == {"user": "u"}
    assert runtime.access_context == "threads.create_run"


async def test_reads_get_a_read_runtime_with_a_store_and_the_order_does_not_matter() -> None:
    def make_graph(runtime: ServerRuntime, config):
        return runtime

    runtime = await call_factory(make_graph, {})
    assert isinstance(runtime, _ReadRuntime) and runtime.execution_runtime is None
    assert runtime.store is not None


def test_config_only_nothing_and_bad_signatures() -> None:
    assert factory_arguments(lambda: None) == []
    assert factory_arguments(lambda config: None) == [("config", "config")]
    with pytest.raises(ValueError):
        factory_arguments(lambda a, b: None)
    with pytest.raises(ValueError):
        factory_arguments(lambda a, b, c: None)
