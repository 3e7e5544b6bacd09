"""A user's graph named like a built-in (``agent``, ``orchestrator``) replaces it and its runs go
to the run-executor pool, never to the fabric's actors."""

from __future__ import annotations

import json
from pathlib import Path

from quadracode_ray.config import Settings
from quadracode_ray.graph_specs import replaced_builtins
from serve_app.executors import ExecutorPool


def test_only_the_builtins_a_user_graph_takes_the_name_of_are_replaced(tmp_path: Path) -> None:
    assert replaced_builtins(Settings(_env_file=None)) == []
    graphs = tmp_path / "langgraph.json"
    graphs.write_text(json.dumps({"graphs": {"agent": "./graph.py:graph", "mine": "./graph.py:graph"}}))
    assert replaced_builtins(Settings(_env_file=None, graphs_file=graphs)) == ["agent"]
    both = Settings(_env_file=None, graphs_file=graphs, graphs={"orchestrator": "pkg.mod:graph"})
    assert replaced_builtins(both) == ["orchestrator", "agent"]


async def test_a_replaced_builtins_runs_go_to_the_run_executor_pool(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, graphs={"agent": "pkg.mod:graph", "orchestrator": "pkg.mod:other"})
    pool = ExecutorPool(settings, "postgresql://localhost/none")
    for graph_id in ("agent", "orchestrator"):
        # No fabric actor is even looked up (no Ray here): the pool's executor by thread.
        assert await pool.choose_host({"graph_id": graph_id, "thread_id": "t-1"}) in pool.names
