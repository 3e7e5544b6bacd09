"""The whole system the notebooks run against: the actor fabric with its real defaults (real
graphs, the scripted model, real Docker sandboxes) and the Serve app beside it, reached by the
notebooks over HTTP exactly as from a laptop.

One system for the module (starting it costs seconds); the notebooks learn where it is from the
environment of their kernel, as a user's would: ``QUADRACODE_API_URL`` (the API),
``RAY_ADDRESS`` and ``QUADRACODE_ACTOR_NAME_PREFIX`` (only 07_cluster uses Ray). Nothing is set
in this process's own environment, so no other test sees it.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from quadracode_ray.config import Settings
from tests.api.conftest import undeploy
from tests.e2e.conftest import FAST_TIMERS, REAL_PARTS, SMALL_SANDBOX

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
APP = "qr-notebooks"
# Headless matplotlib: the charts are PNG outputs of their cells.
MPL_BACKEND = "module://matplotlib_inline.backend_inline"


@dataclass
class NotebookSystem:
    settings: Settings | None  # None: a running system named by the environment
    api_url: str
    kernel_env: dict[str, str]


@pytest.fixture(scope="module")
def notebook_settings(database_url: str, docker_client, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(_env_file=None, database_url=database_url, data_dir=tmp_path_factory.mktemp("nb"),
                    actor_name_prefix=f"n{tag}-", sandbox_installation_id=f"nb{tag}",
                    # 03_your_own_graph runs the graph of this file (the system reads it at start).
                    graphs_file=NOTEBOOKS / "graphs" / "langgraph.json",
                    **FAST_TIMERS, **REAL_PARTS, **SMALL_SANDBOX)


@pytest.fixture(scope="module")
async def notebook_system(request: pytest.FixtureRequest):
    """The module's system; QUADRACODE_TEST_NOTEBOOK_API_URL points the notebooks at a running one
    instead (started with the graphs file above; its Ray address in RAY_ADDRESS, its actor name
    prefix in QUADRACODE_ACTOR_NAME_PREFIX), for fast iteration."""
    if external := os.environ.get("QUADRACODE_TEST_NOTEBOOK_API_URL"):
        yield NotebookSystem(settings=None, api_url=external, kernel_env={
            "QUADRACODE_API_URL": external, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
            "MPLBACKEND": MPL_BACKEND})
        return
    request.getfixturevalue("ray_cluster")
    serve_http_port = request.getfixturevalue("serve_http_port")
    settings = request.getfixturevalue("notebook_settings")
    import ray
    from ray import serve

    from actors.bootstrap import ensure_system_async, shutdown_system
    from serve_app.app import build_app

    await ensure_system_async(settings)
    overrides = settings.model_dump(mode="json", exclude_unset=True)
    serve.run(build_app({"settings": overrides, "fabric": False}), name=APP, route_prefix=f"/{APP}",
              blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{APP}"
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}
    env = {"QUADRACODE_API_URL": url, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "QUADRACODE_ACTOR_NAME_PREFIX": settings.actor_name_prefix,
           # Ray 2.5x turns token auth on for a local cluster; a driver joining it must say so.
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
           "MPLBACKEND": MPL_BACKEND}
    try:
        yield NotebookSystem(settings=settings, api_url=url, kernel_env=env)
    finally:
        undeploy(APP, settings.database_url)
        shutdown_system(settings)
        _remove_containers(settings)


def _remove_containers(settings: Settings) -> None:
    """Once the installation's actors are gone (a dying sandbox actor could re-create its
    container), remove its containers and volumes."""
    from actors.bootstrap import system_actor_names
    from sandbox.testing import remove_installation

    deadline = time.monotonic() + 30
    while system_actor_names(settings) and time.monotonic() < deadline:
        time.sleep(0.1)  # ray.kill returns before the actor is dead; nothing to wait on but its name
    remove_installation(settings.sandbox_installation_id, None)
