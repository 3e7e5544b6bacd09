"""Which graphs the API serves, by id: the built-ins, then a ``langgraph.json``-style graphs
file (``QUADRACODE_GRAPHS_FILE``), then the ``graphs`` setting; a later one wins, so a user's
graph may take a built-in's name (``agent``, ``orchestrator``) and replace it.

Only the specs (import paths) live here, in the core, so the launcher can say what replaces
what without importing the run engine (runs/graph_registry.py loads them).
"""

from __future__ import annotations

import json
from pathlib import Path

from quadracode_ray.config import Settings

BUILTIN_GRAPHS: dict[str, str] = {
    "orchestrator": "quadracode_ray.graphs.orchestrator:graph",
    "agent": "quadracode_ray.graphs.agent:graph",
}


class GraphSpecError(ValueError):
    """A graph spec or graphs file is malformed."""


def graph_specs(settings: Settings) -> dict[str, tuple[str, Path | None]]:
    """Built-ins, then the graphs file, then the ``graphs`` setting (later ones win)."""
    specs: dict[str, tuple[str, Path | None]] = {gid: (spec, None) for gid, spec in BUILTIN_GRAPHS.items()}
    if settings.graphs_file is not None:
        path = Path(settings.graphs_file).expanduser().resolve()
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GraphSpecError(f"graphs file {path}: {exc}") from exc
        graphs = document.get("graphs") if isinstance(document, dict) else None
        if not isinstance(graphs, dict):
            raise GraphSpecError(f"graphs file {path}: expected an object with a 'graphs' map")
        for graph_id, spec in graphs.items():
            if isinstance(spec, dict):  # langgraph.json also allows {"path": ..., "description": ...}
                spec = spec.get("path")
            if not isinstance(spec, str):
                raise GraphSpecError(f"graphs file {path}: graph {graph_id!r} needs an import path string")
            specs[graph_id] = (spec, path.parent)
    for graph_id, spec in settings.graphs.items():
        specs[graph_id] = (spec, None)
    return specs


def replaced_builtins(settings: Settings) -> list[str]:
    """The built-in graphs a user's graph of the same name replaces (its runs then execute on
    the run executors, like any user graph's); none when the graphs file cannot be read."""
    try:
        specs = graph_specs(settings)
    except GraphSpecError:
        return []
    return [gid for gid, spec in BUILTIN_GRAPHS.items() if specs[gid][0] != spec]
