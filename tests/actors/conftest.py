"""The fabric under test: its singletons started once per test module, on the module's database.

Actor names carry a per-module prefix, so modules (and other engineers' sessions) sharing the
session's Ray cluster never see each other's actors; teardown kills them all.
"""

from __future__ import annotations

import uuid

import pytest

from quadracode_ray.config import Settings
from tests.polling import eventually  # noqa: F401 - re-exported for the actor tests

FAST = {
    "heartbeat_interval_s": 0.25,
    "registry_ttl_s": 3.0,  # generous: five engineers share two cores
    "delivery_backoff_s": 0.02,
    "agent_num_cpus": 0.01,
    "agent_brain": "tests.actors.brains:build_test_brain",
    "orchestrator_graph": "tests.actors.graphs:build_test_graph",
    "workspace_client_factory": "quadracode_ray.testing:fake_workspace",
    "db_pool_max_size": 4,
}


@pytest.fixture(scope="module")
def fabric_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory,
                    request: pytest.FixtureRequest) -> Settings:
    overrides = {**FAST, **getattr(request.module, "FABRIC_SETTINGS", {})}
    return Settings(_env_file=None, database_url=database_url, data_dir=tmp_path_factory.mktemp("fabric"),
                    actor_name_prefix=f"t{uuid.uuid4().hex[:8]}-", **overrides)


@pytest.fixture(scope="module")
async def system(ray_cluster: None, fabric_settings: Settings):
    from actors.bootstrap import ensure_system_async, shutdown_system

    handles = await ensure_system_async(fabric_settings)
    yield handles
    shutdown_system(fabric_settings)


