"""The whole fabric with its real defaults: real graphs, the scripted model, real sandboxes.

Each test module gets its own system: actor names with a module prefix, a sandbox
installation id of its own (so its Docker containers and volumes are found and removed at
teardown, and never touch another session's), and the module's fresh database. Only timers
are shortened (heartbeats, TTL, retry backoff), so the tests stay quick while every part
that does work is the one users run.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspacePathNotFound
from tests import polling

FAST_TIMERS = {
    "heartbeat_interval_s": 0.5,
    "registry_ttl_s": 5.0,
    "delivery_backoff_s": 0.05,
    "agent_num_cpus": 0.01,
    "db_pool_max_size": 4,
}
REAL_PARTS = {
    # The orchestrator graph and workspace factory are the settings' defaults already; the agent
    # brain's default is a line-by-line script, so the real agent graph is named explicitly.
    "orchestrator_graph": "quadracode_ray.graphs.orchestrator:build_orchestrator_graph",
    "agent_brain": "quadracode_ray.graphs.agent:build_agent_graph",
    "workspace_client_factory": "actors.workspaces:sandbox_workspace_client",
    "model": "scripted:default",
}
SMALL_SANDBOX = {"sandbox_memory_mb": 512, "sandbox_cpus": 1.0, "sandbox_idle_stop_s": 0}
WORKSPACES_USED = ("default",)


@pytest.fixture(scope="module")
def e2e_settings(database_url: str, docker_client, tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Settings:
    overrides = {**FAST_TIMERS, **REAL_PARTS, **SMALL_SANDBOX, **getattr(request.module, "E2E_SETTINGS", {})}
    tag = uuid.uuid4().hex[:8]
    return Settings(_env_file=None, database_url=database_url, data_dir=tmp_path_factory.mktemp("e2e"),
                    actor_name_prefix=f"e{tag}-", sandbox_installation_id=f"e2e{tag}", **overrides)


@pytest.fixture(scope="module")
async def system(ray_cluster: None, e2e_settings: Settings):
    from actors.bootstrap import ensure_system_async, shutdown_system

    handles = await ensure_system_async(e2e_settings)
    yield handles
    shutdown_system(e2e_settings)
    remove_workspaces(e2e_settings, docker_client=None)


@contextlib.contextmanager
def serve_app_beside(settings: Settings, serve_http_port: int, app: str) -> Iterator[str]:
    """The Serve app deployed as ``app`` beside a module's fabric (already started), with the
    fabric's settings, secrets included; yields its URL and undeploys it after."""
    import httpx
    from ray import serve

    from serve_app.app import build_app
    from tests.api.conftest import undeploy

    overrides = settings.model_dump(mode="json", exclude_unset=True)
    overrides.update({name: getattr(settings, name).get_secret_value() for name in settings.model_fields_set
                      if isinstance(getattr(settings, name), SecretStr)})  # dumped masked
    serve.run(build_app({"settings": overrides, "fabric": False}), name=app, route_prefix=f"/{app}", blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{app}"
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}
    try:
        yield url
    finally:
        undeploy(app, settings.database_url)


def remove_workspaces(settings: Settings, docker_client=None) -> int:
    """Kill the workspace actors the tests used and remove this installation's containers."""
    import ray
    from docker.errors import DockerException

    from quadracode_ray import NAMESPACE
    from sandbox.actor import actor_name
    from sandbox.testing import remove_installation

    names = {actor_name(workspace_id, settings) for workspace_id in WORKSPACES_USED}
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    # ray.kill returns before the actor is dead; a dying actor could still re-create its container.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and names & {entry["name"] for entry in ray.util.list_named_actors(
            all_namespaces=True) if entry["namespace"] == NAMESPACE}:
        time.sleep(0.1)
    try:
        return remove_installation(settings.sandbox_installation_id, docker_client)
    except DockerException:
        return 0


async def eventually(probe: Callable[[], Awaitable[Any]], *, timeout: float = 60.0, what: str = "condition") -> Any:
    """The shared poll with the whole system's longer default deadline."""
    return await polling.eventually(probe, timeout=timeout, what=what, interval=0.1)


async def file_exists(workspace, path: str) -> bool:
    """Whether ``path`` exists in the workspace (a probe for ``eventually``)."""
    try:
        await workspace.read_file(path)
        return True
    except WorkspacePathNotFound:
        return False


def message_texts(values: dict[str, Any], *, type_: str | None = None, name: str | None = None) -> list[str]:
    """Text of the thread's messages (LangChain messages dumped as dicts), optionally filtered."""
    texts = []
    for message in values.get("messages", []):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            continue
        if type_ is not None and message.get("type") != type_:
            continue
        if name is not None and message.get("name") != name:
            continue
        texts.append(message["content"])
    return texts


async def thread_runs(settings: Settings, thread_id: str) -> list[dict]:
    """The thread's rows of qr_runs (every input of a thread is one), oldest first."""
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row) as conn:
        cursor = await conn.execute("SELECT * FROM qr_runs WHERE thread_id = %s ORDER BY created_at", (thread_id,))
        return await cursor.fetchall()


def sources(runs: list[dict]) -> list[tuple[str, str]]:
    """(what queued it, status) of each run: user_message, agent_result, ..."""
    return [((run["metadata"] or {}).get("source"), run["status"]) for run in runs]
