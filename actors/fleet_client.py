"""The FleetClient interface (quadracode_ray.interfaces.fleet) backed by the fleet manager actor."""

from __future__ import annotations

from typing import Any

from actors.common import FLEET, HandleCache
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.fleet import AgentInfo
from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE


class FleetActorClient:
    """What graphs and the API call to manage agents; errors are the fleet's typed FleetErrors
    (FleetCapacityError, HotpathAgentError, UnknownAgentError)."""

    def __init__(self, settings: Settings, handle: Any = None):
        self._handles = HandleCache(settings)
        if handle is not None:
            self._handles.put(FLEET, handle)

    def __getstate__(self) -> dict[str, Any]:
        return {"_handles": HandleCache(self._handles._settings)}

    @property
    def _fleet(self) -> Any:
        return self._handles.get(FLEET)

    async def list_agents(self, *, capability: str | None = None, kind: str | None = None) -> list[AgentInfo]:
        return await self._fleet.list.remote(capability, kind)

    async def spawn_agent(self, *, kind: str = "coder", capabilities: list[str] | None = None,
                          workspace_id: str = DEFAULT_WORKSPACE, hotpath: bool = False,
                          resources: dict[str, float] | None = None) -> AgentInfo:
        return await self._fleet.spawn.remote({"kind": kind, "capabilities": list(capabilities or []),
                                               "workspace_id": workspace_id, "hotpath": hotpath,
                                               "resources": dict(resources or {})})

    async def kill_agent(self, agent_id: str, *, force: bool = False) -> None:
        await self._fleet.kill.remote(agent_id, force)

    async def mark_hotpath(self, agent_id: str) -> AgentInfo:
        return await self._fleet.set_hotpath.remote(agent_id, True)

    async def clear_hotpath(self, agent_id: str) -> AgentInfo:
        return await self._fleet.set_hotpath.remote(agent_id, False)
