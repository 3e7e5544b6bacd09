"""The operator API over real HTTP: the whole fabric (real Ray actors, Postgres, Docker
sandboxes, the scripted model) with the Serve app deployed twice beside it, once open (auth
off) and once with API keys and an admin owner. One fabric and one database for this folder:
starting them costs tens of seconds on a loaded machine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from quadracode_ray.config import Settings
from tests.api.conftest import undeploy
from tests.conftest import new_database
from tests.e2e.conftest import FAST_TIMERS, REAL_PARTS, SMALL_SANDBOX

FLEET_CAP = 2
ADMIN_KEY = "admin-" + uuid.uuid4().hex
ALICE_KEY = "alice-" + uuid.uuid4().hex
BOB_KEY = "bob-" + uuid.uuid4().hex


@pytest.fixture(scope="package")
def operator_database_url(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url, "t_operator") as url:
        yield url


@pytest.fixture(scope="package")
def operator_settings(operator_database_url: str, docker_client, tmp_path_factory) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(_env_file=None, database_url=operator_database_url, data_dir=tmp_path_factory.mktemp("operator"),
                    actor_name_prefix=f"o{tag}-", sandbox_installation_id=f"op{tag}",
                    fleet_max_agents=FLEET_CAP, **FAST_TIMERS, **REAL_PARTS, **SMALL_SANDBOX)


@pytest.fixture(scope="package")
async def fabric(ray_cluster: None, operator_settings: Settings) -> AsyncIterator[Any]:
    from actors.bootstrap import ensure_system_async, shutdown_system

    handles = await ensure_system_async(operator_settings)
    yield handles
    shutdown_system(operator_settings)
    remove_workspaces(operator_settings)


def _deploy(settings: Settings, serve_http_port: int, app: str, **extra: Any) -> str:
    from ray import serve

    from serve_app.app import build_app

    overrides = {**settings.model_dump(mode="json", exclude_unset=True), **extra}
    serve.run(build_app({"settings": overrides, "fabric": False}), name=app, route_prefix=f"/{app}", blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{app}"
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}
    return url


@pytest.fixture(scope="package")
def api(fabric, operator_settings: Settings, serve_http_port: int) -> Iterator[str]:
    """The operator API with auth off (everyone is an admin)."""
    app = f"op-{uuid.uuid4().hex[:6]}"
    yield _deploy(operator_settings, serve_http_port, app)
    undeploy(app, operator_settings.database_url)


@pytest.fixture(scope="package")
def secured_api(fabric, operator_settings: Settings, serve_http_port: int) -> Iterator[str]:
    """The operator API with keys: ``root`` is an admin, ``alice`` and ``bob`` are not."""
    app = f"op-sec-{uuid.uuid4().hex[:6]}"
    keys = json.dumps({"root": ADMIN_KEY, "alice": ALICE_KEY, "bob": BOB_KEY})
    yield _deploy(operator_settings, serve_http_port, app, auth_api_keys=keys, auth_admin_owners=["root"])
    undeploy(app, operator_settings.database_url)


@pytest.fixture
async def http(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=180) as client:
        yield client


def remove_workspaces(settings: Settings) -> None:
    """Kill this installation's workspace actors and remove its containers and volumes."""
    import ray
    from docker.errors import DockerException

    from quadracode_ray import NAMESPACE
    from sandbox.actor import ACTOR_NAME_PREFIX
    from sandbox.testing import remove_installation

    prefix = settings.actor_name_prefix + ACTOR_NAME_PREFIX

    def names() -> set[str]:
        return {e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
                if e["namespace"] == NAMESPACE and e["name"].startswith(prefix)}

    for name in names():
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    deadline = time.monotonic() + 30  # a dying actor could still re-create its container
    while names() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        remove_installation(settings.sandbox_installation_id)
    except DockerException:
        pass


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body into its events ({"event", "data", "id"}), comments left out."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
        if fields:
            events.append(fields)
    return events
