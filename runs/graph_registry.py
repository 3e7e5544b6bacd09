"""The graphs API runs can execute: built-in ones plus user graphs named by import path.

A graph spec is ``package.module:attr`` or ``path/to/file.py:attr`` (relative paths are
resolved against the config file that names them, like ``langgraph.json``). ``attr`` is a
compiled graph, a ``StateGraph`` (compiled here), or a factory returning either, so a graph
can be built per run: called as the official server calls it (runs/graph_factories.py), with
the run's config, a ``ServerRuntime``, both, or nothing, by its signature.

A graph that cannot be imported is kept in the registry with the reason, so its assistant
still exists and every use of it answers with a clear message instead of the server failing
to start (the built-in graphs may be installed later than this module).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from quadracode_ray.config import Settings
from quadracode_ray.graph_specs import BUILTIN_GRAPHS, GraphSpecError, graph_specs  # noqa: F401 (re-exported)
from quadracode_ray.import_paths import call_with_supported, load_object
from quadracode_ray.llm.base import ChatModel
from quadracode_ray.llm.factory import shared_chat_model
from runs.graph_factories import call_factory

# The namespace the official server derives a graph's default assistant id from, so the
# same graph gets the same assistant id here and there.
NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")

class GraphUnavailableError(RuntimeError):
    """The graph is registered but its import path does not load."""


def default_assistant_id(graph_id: str) -> str:
    return str(uuid5(NAMESPACE_GRAPH, graph_id))


@dataclass
class GraphEntry:
    graph_id: str
    spec: str
    base_dir: Path | None
    target: Any = None  # compiled graph, StateGraph, or factory
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None

    @property
    def is_factory(self) -> bool:
        return self.target is not None and not isinstance(self.target, (Pregel, StateGraph))


def _load_target(spec: str, base_dir: Path | None) -> Any:
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise GraphSpecError(f"graph spec {spec!r} must be 'module:attr' or 'file.py:attr'")
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        path = path.resolve()
        if not path.is_file():
            raise GraphUnavailableError(f"file {path} does not exist")
        name = "qr_user_graph_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(name, path)
            assert module_spec and module_spec.loader
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
    else:
        module = importlib.import_module(module_part)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise GraphUnavailableError(f"{module_part} has no attribute {attr!r}") from None


class GraphRegistry:
    """graph_id -> entry; loading is attempted once, at construction."""

    def __init__(self, specs: dict[str, tuple[str, Path | None]]):
        self.entries: dict[str, GraphEntry] = {}
        for graph_id, (spec, base_dir) in specs.items():
            entry = GraphEntry(graph_id, spec, base_dir)
            try:
                entry.target = _load_target(spec, base_dir)
                if not isinstance(entry.target, (Pregel, StateGraph)) and not callable(entry.target):
                    raise GraphSpecError(f"{spec} is neither a graph nor a factory returning one")
            except Exception as exc:  # any import failure is reported, never fatal
                entry.error = f"{type(exc).__name__}: {exc}"
            self.entries[graph_id] = entry

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphRegistry:
        registry = cls(graph_specs(settings))
        orchestrator = registry.entries.get("orchestrator")
        configured = settings.orchestrator_graph
        # QUADRACODE_ORCHESTRATOR_GRAPH names the orchestrator's graph for API runs too, unless the
        # graphs file or setting registers "orchestrator" itself (those win, as for any graph id).
        if (orchestrator is not None and orchestrator.spec == BUILTIN_GRAPHS["orchestrator"]
                and configured != Settings.model_fields["orchestrator_graph"].default):
            orchestrator.spec = configured
            orchestrator.error = None
            try:
                load_object(configured)
                orchestrator.target = partial(configured_orchestrator_graph, settings)
            except Exception as exc:  # reported as any graph that does not load, never fatal
                orchestrator.error = f"{type(exc).__name__}: {exc}"
        return registry

    def ids(self) -> list[str]:
        return list(self.entries)

    def get(self, graph_id: str) -> GraphEntry | None:
        return self.entries.get(graph_id)

    async def build(self, graph_id: str, config: dict | None = None, *,
                    checkpointer: Any = None, store: Any = None,
                    access_context: str = "threads.read", context: Any = None) -> Pregel:
        """A compiled graph for one use, with the given checkpointer and store attached.

        ``access_context`` says why (the official server's: ``threads.create_run`` to execute a
        run, ``threads.read``, ``threads.update``, ``assistants.read``); a factory asking for a
        ``ServerRuntime`` gets it with that, the store and, for a run, the run's ``context``."""
        entry = self.entries.get(graph_id)
        if entry is None:
            raise GraphUnavailableError(f"graph {graph_id!r} is not registered")
        if entry.error is not None:
            raise GraphUnavailableError(f"graph {graph_id!r} ({entry.spec}) cannot be loaded: {entry.error}")
        target = entry.target
        if entry.is_factory:
            target = await call_factory(target, config or {}, access_context=access_context,
                                        store=store, context=context)
        if isinstance(target, StateGraph):
            return target.compile(checkpointer=checkpointer, store=store)
        if isinstance(target, Pregel):
            return target.copy(update={"checkpointer": checkpointer, "store": store})
        raise GraphUnavailableError(f"graph {graph_id!r}: factory returned {type(target).__name__}, not a graph")


def configured_orchestrator_graph(settings: Settings, config: dict | None = None) -> Any:
    """``settings.orchestrator_graph`` for one API run, called as the orchestrator actor calls it
    (actors/orchestrator.py ``build_graph``) with the clients the run host put in the run's
    configurable; the host attaches its checkpointer and store to what it returns."""
    configurable = (config or {}).get("configurable") or {}
    factory = load_object(settings.orchestrator_graph)
    if not callable(factory) or hasattr(factory, "ainvoke"):
        return factory

    def model() -> ChatModel:
        given = configurable.get("model")
        return given if isinstance(given, ChatModel) else shared_chat_model(given, settings)

    clients = {name: configurable.get(name) for name in ("workspace", "fleet", "delegation", "stop", "guardrails",
                                                          "budgets")}
    return call_with_supported(factory, lazy={"model": model}, settings=settings, **clients)
