"""The fabric's clients for graphs that run outside the orchestrator actor (API runs).

A run of the ``orchestrator`` or ``agent`` assistant executes in a run-executor actor; these
give its graph the same powers the orchestrator actor's own runs have: the fleet, delegation
(through the orchestrator actor, so an agent's result comes back to the run's thread) and the
``default`` workspace. Every client is lazy: nothing is contacted until a tool uses it.
"""

from __future__ import annotations

from typing import Any

from actors.common import ORCHESTRATOR, HandleCache
from actors.fleet_client import FleetActorClient
from actors.workspaces import LazyWorkspace
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.fleet import TaskInfo

DEFAULT_WORKSPACE = "default"
# Built-in assistants and the clients their graphs take from config["configurable"].
_CLIENTS_BY_GRAPH = {"orchestrator": ("fleet", "delegation", "workspace"), "agent": ("workspace",)}


class OrchestratorDelegation:
    """DelegationClient backed by the orchestrator actor: ``delegate`` returns at once and the
    agent's result resumes ``parent_thread_id`` later, as for the actor's own runs."""

    def __init__(self, settings: Settings):
        self._handles = HandleCache(settings)

    def __getstate__(self) -> dict[str, Any]:
        return {"_handles": HandleCache(self._handles._settings)}

    @property
    def _orchestrator(self) -> Any:
        return self._handles.get(ORCHESTRATOR)

    async def delegate(self, instruction: str, *, parent_thread_id: str, agent_id: str | None = None,
                       capability: str | None = None) -> TaskInfo:
        return await self._orchestrator.delegate.remote(instruction, parent_thread_id, agent_id, capability)

    async def task_status(self, task_id: str) -> TaskInfo:
        return await self._orchestrator.task_status.remote(task_id)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        return await self._orchestrator.cancel_task.remote(task_id)


def fabric_configurable(graph_id: str, settings: Settings) -> dict[str, Any]:
    """The clients a built-in graph takes from ``config["configurable"]`` (none for user graphs)."""
    wanted = _CLIENTS_BY_GRAPH.get(graph_id, ())
    makers = {
        "fleet": lambda: FleetActorClient(settings),
        "delegation": lambda: OrchestratorDelegation(settings),
        "workspace": lambda: LazyWorkspace(DEFAULT_WORKSPACE, settings),
    }
    return {name: makers[name]() for name in wanted}
