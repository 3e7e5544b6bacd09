"""The fabric's clients for the built-in graphs' API runs.

A run of the ``orchestrator`` assistant executes in the orchestrator actor, which passes its own
delegation, fleet and stop registry (``local``); where it executes elsewhere (a run-executor,
when the Serve app runs without the fabric's orchestrator, or an agent actor), these give its
graph the same powers: the fleet, delegation (through the orchestrator actor, so an agent's
result comes back to the run's thread) and the ``default`` workspace. Every client is lazy:
nothing is contacted until a tool uses it.
"""

from __future__ import annotations

from typing import Any

from actors.common import ORCHESTRATOR, HandleCache
from actors.fleet_client import FleetActorClient
from actors.workspaces import BusEventReporter, LazyWorkspace
from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.graphs.budgets import Budgets
from quadracode_ray.interfaces.fleet import TaskInfo
from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE
from quadracode_ray.persistence.guardrails import settings_guardrails

# Built-in assistants and the clients their graphs take from config["configurable"].
_CLIENTS_BY_GRAPH = {"orchestrator": ("fleet", "delegation", "workspace", "stop", "guardrails", "events", "budgets",
                                      "host_settings"),
                     "agent": ("workspace", "agent_id", "guardrails", "events", "budgets", "host_settings")}


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
                       capability: str | None = None, config: dict[str, Any] | None = None) -> TaskInfo:
        # The calling run's trace goes along: the task, and the run its result starts, continue it.
        return await self._orchestrator.delegate.remote(instruction, parent_thread_id, agent_id, capability,
                                                        config=config, trace=tracing.carrier() or None)

    async def task_status(self, task_id: str) -> TaskInfo:
        return await self._orchestrator.task_status.remote(task_id)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        return await self._orchestrator.cancel_task.remote(task_id)


def fabric_configurable(graph_id: str, settings: Settings, **local: Any) -> dict[str, Any]:
    """The clients a built-in graph takes from ``config["configurable"]`` (none for user graphs).

    ``local``: clients the hosting actor has itself (the orchestrator's delegation, fleet and
    ``stop`` registry; an agent's workspace and id), used instead of remote ones; ``stop`` and
    ``agent_id`` exist only where they are local."""
    wanted = _CLIENTS_BY_GRAPH.get(graph_id, ())
    makers = {
        "fleet": lambda: FleetActorClient(settings),
        "delegation": lambda: OrchestratorDelegation(settings),
        "workspace": lambda: LazyWorkspace(DEFAULT_WORKSPACE, settings),
        # The installation's guardrails, as an operator last set them (PATCH /system/guardrails).
        "guardrails": lambda: settings_guardrails(settings),
        # The installation's token/cost budgets and price table (QUADRACODE_BUDGET_*, _MODEL_PRICES).
        "budgets": lambda: Budgets.from_settings(settings),
        # Where graphs report what the run's stream alone would not tell the operator (a failed MCP server).
        "events": lambda: BusEventReporter(settings, graph_id),
        # The host's settings for what the graph builds itself (its model): the host may have
        # been given them as an object, with no QUADRACODE_* environment to load them from.
        "host_settings": lambda: settings,
    }
    return {name: local[name] if name in local else makers[name]() for name in wanted
            if name in local or name in makers}
