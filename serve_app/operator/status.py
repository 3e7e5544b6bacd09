"""What ``GET /system/status`` reports: Ray's nodes, this installation's named actors and whether
each answers, Postgres, and the Docker engine of each node that runs workspaces."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from pydantic import BaseModel, Field
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from quadracode_ray import NAMESPACE
from sandbox.placement import WORKSPACE_RESOURCE
from serve_app.context import AppContext

PROBE_TIMEOUT_S = 5.0
MAX_ACTORS_PROBED = 500


class NodeStatus(BaseModel):
    node_id: str
    alive: bool
    address: str | None = None
    resources: dict[str, float] = Field(description="The node's total resources (CPU, memory, GPU, workspace, ...).")


class ActorStatus(BaseModel):
    name: str
    answers: bool
    latency_ms: float | None = None
    error: str | None = None


class PostgresStatus(BaseModel):
    ok: bool
    latency_ms: float | None = None
    version: str | None = None
    error: str | None = None


class DockerStatus(BaseModel):
    node_id: str
    ok: bool
    version: str | None = None
    containers_running: int | None = None
    error: str | None = None


class ModelStatus(BaseModel):
    model: str
    scripted: bool = Field(description="The built-in offline scripted model answers (no API key is set).")


class SystemStatus(BaseModel):
    nodes: list[NodeStatus]
    actors: list[ActorStatus]
    postgres: PostgresStatus
    docker: list[DockerStatus]
    model: ModelStatus


def _nodes() -> list[NodeStatus]:
    return [NodeStatus(node_id=node["NodeID"], alive=bool(node.get("Alive")), address=node.get("NodeManagerAddress"),
                       resources={k: float(v) for k, v in (node.get("Resources") or {}).items()
                                  if not k.startswith("node:")})
            for node in ray.nodes()]


def _actor_names(prefix: str) -> list[str]:
    return sorted(entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
                  if entry["namespace"] == NAMESPACE and entry["name"].startswith(prefix))[:MAX_ACTORS_PROBED]


async def _probe_actor(name: str) -> ActorStatus:
    started = time.perf_counter()
    try:
        handle = await asyncio.to_thread(ray.get_actor, name, NAMESPACE)
        method = next((getattr(handle, m) for m in ("ready", "ping") if hasattr(handle, m)), None)
        if method is None:
            return ActorStatus(name=name, answers=False, error="it offers no ready() or ping() to probe")
        await asyncio.wait_for(method.remote(), PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the status reports any failure
        return ActorStatus(name=name, answers=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return ActorStatus(name=name, answers=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


async def _postgres(context: AppContext) -> PostgresStatus:
    started = time.perf_counter()
    try:
        pool = await asyncio.wait_for(context.pool(), PROBE_TIMEOUT_S * 2)
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT version() AS version")).fetchone()
    except Exception as exc:  # noqa: BLE001
        return PostgresStatus(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return PostgresStatus(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2),
                          version=str(row["version"]))


@ray.remote(num_cpus=0, max_retries=0)
def _docker_on_this_node() -> dict[str, Any]:
    import docker

    client = docker.from_env(timeout=int(PROBE_TIMEOUT_S))
    try:
        version = client.version()
        running = len(client.containers.list(filters={"status": "running"}))
    finally:
        client.close()
    return {"version": version.get("Version"), "containers_running": running}


async def _docker(node_id: str) -> DockerStatus:
    try:
        ref = _docker_on_this_node.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)).remote()
        found = await asyncio.wait_for(ref, PROBE_TIMEOUT_S * 3)
    except Exception as exc:  # noqa: BLE001
        return DockerStatus(node_id=node_id, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return DockerStatus(node_id=node_id, ok=True, **found)


async def system_status(context: AppContext) -> SystemStatus:
    settings = context.settings
    nodes = await asyncio.to_thread(_nodes)
    names = await asyncio.to_thread(_actor_names, settings.actor_name_prefix)
    # Workspaces run on the nodes that offer the workspace resource, or anywhere when none does.
    workspace_nodes = [n.node_id for n in nodes if n.alive and n.resources.get(WORKSPACE_RESOURCE)] or \
        [n.node_id for n in nodes if n.alive]
    actors, postgres, docker = await asyncio.gather(
        asyncio.gather(*(_probe_actor(name) for name in names)), _postgres(context),
        asyncio.gather(*(_docker(node_id) for node_id in workspace_nodes)))
    return SystemStatus(nodes=nodes, actors=list(actors), postgres=postgres, docker=list(docker),
                        model=ModelStatus(model=settings.default_model, scripted=settings.uses_scripted_model))
