"""Fleet and registry over HTTP: list, spawn, mark and kill agents; the fleet's figures.

Admin routes (serve_app/operator/access.py). An agent's row joins the registry (node,
heartbeat, health), the fleet manager (hotpath, workspace) and Postgres (when it was spawned,
the task it is working on and that task's thread).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from actors.common import REGISTRY
from quadracode_ray.interfaces.fleet import AgentInfo
from serve_app.errors import NotFound
from serve_app.operator.access import AdminDep, context
from serve_app.operator.fabric import operator_fabric, translated

router = APIRouter(tags=["Fleet"])


class AgentView(BaseModel):
    agent_id: str
    kind: str
    capabilities: list[str]
    node: str | None = Field(description="Ray node id the agent runs on (None: not registered yet).")
    workspace_id: str
    heartbeat_age_s: float | None = Field(description="Seconds since its last heartbeat to the registry.")
    healthy: bool
    hotpath: bool = Field(description="A hotpath agent is killed only with force=true.")
    registered: bool = Field(description="Whether the registry knows it (agents register when they start).")
    managed: bool = Field(description="Spawned by the fleet manager (counts against the cap).")
    current_task_id: str | None = None
    current_thread_id: str | None = Field(default=None, description="The thread that delegated the current task.")
    spawned_at: datetime | None = None


class SpawnBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(default="coder", min_length=1, max_length=100, pattern=r"^[a-z0-9_-]+$")
    capabilities: list[str] = Field(default_factory=list, max_length=100)
    hotpath: bool = False
    workspace_id: str = Field(default="default", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class HotpathBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hotpath: bool


class KillResult(BaseModel):
    agent_id: str
    killed: bool
    forced: bool


class NodeFigures(BaseModel):
    node: str | None
    alive: int
    busy: int


class FleetFigures(BaseModel):
    cap: int = Field(description="Most agents alive at once (settings.fleet_max_agents).")
    alive: int
    busy: int = Field(description="Agents working on a delegated task.")
    spawning: int = Field(description="Spawns in progress (their slot is reserved).")
    hotpath: list[str]
    nodes: list[NodeFigures]
    warm: int = Field(default=0, description="Idle agents the warm pool holds ready (at its last look).")
    warm_target: int = Field(default=0, description="Idle agents the warm pool keeps (settings.fleet_warm_agents).")


async def _db_details(request: Request, agent_ids: list[str]) -> tuple[dict[str, datetime], dict[str, dict]]:
    """When each agent was spawned, and the task each is running (the newest one)."""
    if not agent_ids:
        return {}, {}
    pool = await context(request).pool()
    async with pool.connection() as conn:
        spawned = {row["agent_id"]: row["spawned_at"] for row in await (await conn.execute(
            "SELECT agent_id, spawned_at FROM qr_fleet_agents WHERE agent_id = ANY(%s)", (agent_ids,))).fetchall()}
        tasks = {row["agent_id"]: row for row in await (await conn.execute(
            "SELECT DISTINCT ON (agent_id) agent_id, task_id, parent_thread_id FROM qr_tasks "
            "WHERE status = 'running' AND agent_id = ANY(%s) ORDER BY agent_id, updated_at DESC",
            (agent_ids,))).fetchall()}
    return spawned, tasks


async def list_agent_views(request: Request) -> list[AgentView]:
    fabric = operator_fabric(context(request))
    with translated():
        managed = {a.agent_id: a for a in await fabric.fleet.list_agents()}
        registered = {a.agent_id: a for a in await fabric.actor(REGISTRY).list.remote(None, None, True)}
    ids = sorted(set(managed) | set(registered))
    spawned, tasks = await _db_details(request, ids)
    views = []
    for agent_id in ids:
        info: AgentInfo = managed.get(agent_id) or registered[agent_id]
        seen = registered.get(agent_id)
        task = tasks.get(agent_id) or {}
        views.append(AgentView(
            agent_id=agent_id, kind=info.kind, capabilities=info.capabilities, workspace_id=info.workspace_id,
            node=seen.node if seen else info.node, healthy=bool(seen and seen.healthy),
            heartbeat_age_s=seen.last_heartbeat_age_s if seen else None,
            hotpath=info.hotpath, registered=seen is not None, managed=agent_id in managed,
            current_task_id=task.get("task_id"), current_thread_id=task.get("parent_thread_id"),
            spawned_at=spawned.get(agent_id)))
    return views


async def _view(request: Request, agent_id: str) -> AgentView:
    for view in await list_agent_views(request):
        if view.agent_id == agent_id:
            return view
    raise NotFound(f"no agent {agent_id!r} in the fleet or the registry")


@router.get("/fleet/agents", response_model=list[AgentView], summary="Every agent the registry or the fleet knows")
async def list_agents(request: Request, _: AdminDep,
                      kind: str | None = Query(None, description="Only agents of this kind."),
                      capability: str | None = Query(None, description="Only agents with this capability."),
                      ) -> list[AgentView]:
    views = await list_agent_views(request)
    return [v for v in views if (kind is None or v.kind == kind)
            and (capability is None or capability in v.capabilities)]


@router.post("/fleet/agents", response_model=AgentView, status_code=201,
             summary="Spawn an agent (409 at the cap, with the cap in the error)")
async def spawn_agent(request: Request, body: SpawnBody, _: AdminDep) -> AgentView:
    fabric = operator_fabric(context(request))
    with translated():
        info = await fabric.fleet.spawn_agent(kind=body.kind, capabilities=body.capabilities,
                                              workspace_id=body.workspace_id, hotpath=body.hotpath)
    return await _view(request, info.agent_id)


@router.patch("/fleet/agents/{agent_id}", response_model=AgentView, summary="Mark or clear an agent's hotpath")
async def patch_agent(request: Request, agent_id: str, body: HotpathBody, _: AdminDep) -> AgentView:
    fabric = operator_fabric(context(request))
    with translated():
        await (fabric.fleet.mark_hotpath(agent_id) if body.hotpath else fabric.fleet.clear_hotpath(agent_id))
    return await _view(request, agent_id)


@router.delete("/fleet/agents/{agent_id}", response_model=KillResult,
               summary="Kill an agent (409 for a hotpath agent without force); its task goes to another agent")
async def kill_agent(request: Request, agent_id: str, _: AdminDep,
                     force: bool = Query(False, description="Kill a hotpath agent too.")) -> KillResult:
    fabric = operator_fabric(context(request))
    with translated():
        await fabric.fleet.kill_agent(agent_id, force=force)
    return KillResult(agent_id=agent_id, killed=True, forced=force)


@router.get("/fleet", response_model=FleetFigures, summary="The fleet's cap and how many agents are alive and busy")
async def fleet_figures(request: Request, _: AdminDep) -> FleetFigures:
    fabric = operator_fabric(context(request))
    with translated():
        stats: dict[str, Any] = await fabric.actor("fleet").stats.remote()
    views = [v for v in await list_agent_views(request) if v.managed]
    nodes: dict[str | None, NodeFigures] = {}
    for view in views:
        figures = nodes.setdefault(view.node, NodeFigures(node=view.node, alive=0, busy=0))
        figures.alive += 1
        figures.busy += view.current_task_id is not None
    return FleetFigures(cap=stats["cap"], alive=stats["live"], busy=sum(v.current_task_id is not None for v in views),
                        spawning=stats["starting"], hotpath=stats["hotpath"],
                        nodes=sorted(nodes.values(), key=lambda n: n.node or ""),
                        warm=stats.get("warm", 0), warm_target=stats.get("warm_target", 0))
