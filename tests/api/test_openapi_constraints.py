"""The OpenAPI document states what the workspace routes enforce, so generated input reaches the
code instead of bouncing off a check the schema did not mention (pure: the app built without Ray
or a database)."""

from __future__ import annotations

import re

from quadracode_ray.config import Settings
from sandbox.models import WORKSPACE_ID
from sandbox.snapshots import SNAPSHOT_ID
from serve_app.asgi import create_fastapi_app
from serve_app.context import AppContext
from tests.api.graphs import TEST_GRAPHS

LIMITS = {"sandbox_cpus": 0.5, "sandbox_memory_mb": 256, "sandbox_pids_limit": 100, "sandbox_max_exec_timeout_s": 120.0}


def _spec() -> dict:
    return create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS, **LIMITS))).openapi()


def test_workspace_and_snapshot_ids_in_paths_carry_the_sandboxs_patterns() -> None:
    expected = {"workspace_id": WORKSPACE_ID.pattern, "snapshot_id": SNAPSHOT_ID.pattern}
    seen = set()
    for path, item in _spec()["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", ()) if isinstance(operation, dict) else ():
                if parameter["in"] == "path" and parameter["name"] in expected:
                    assert parameter["schema"]["pattern"] == expected[parameter["name"]], (method, path)
                    seen.add((method, path, parameter["name"]))
    assert len({s for s in seen if s[2] == "workspace_id"}) >= 18 and any(s[2] == "snapshot_id" for s in seen)
    assert re.fullmatch(WORKSPACE_ID.pattern, "proj-1.v2") and not re.fullmatch(WORKSPACE_ID.pattern, "../x")


def test_a_new_workspaces_limits_and_an_execs_timeout_state_the_installations_maxima() -> None:
    schemas = _spec()["components"]["schemas"]

    def maximum(model: str, field: str) -> float:
        schema = schemas[model]["properties"][field]
        return next(o["maximum"] for o in schema.get("anyOf", [schema]) if o.get("type") in ("number", "integer"))

    assert maximum("WorkspaceCreate", "cpus") == 0.5
    assert maximum("WorkspaceCreate", "memory_mb") == 256
    assert maximum("WorkspaceCreate", "pids_limit") == 100
    assert maximum("ExecBody", "timeout") == 120.0
    for body in ("ExecBody", "ProcessBody"):
        env = schemas[body]["properties"]["env"]
        assert env["propertyNames"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
