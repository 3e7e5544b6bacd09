"""What the orchestrator graph may do with other agents. The actor layer implements it.

Delegation never blocks: ``delegate`` returns a TaskInfo at once; the agent's TaskResult
arrives later and is folded into the orchestrator's thread (graph input ``task_results``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE

TaskStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class FleetError(RuntimeError):
    """A fleet operation was refused (cap reached, hotpath agent, unknown id, ...)."""


class AgentInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str
    kind: str
    capabilities: list[str] = Field(default_factory=list)
    workspace_id: str = DEFAULT_WORKSPACE
    node: str | None = None
    healthy: bool = True
    hotpath: bool = False
    last_heartbeat_age_s: float | None = None


class TaskInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: str
    agent_id: str | None
    parent_thread_id: str
    instruction: str
    status: TaskStatus
    created_at: datetime


class TaskResult(BaseModel):
    """What an agent hands back for a delegated task, failures included."""

    model_config = ConfigDict(extra="forbid")
    task_id: str
    agent_id: str | None
    status: TaskStatus
    output: str = ""
    error: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    """Workspace paths the agent produced or changed."""
    usage: dict[str, float] | None = None
    """What the task spent on models (``graphs.budgets.empty_spent()`` keys), when known."""


@runtime_checkable
class FleetClient(Protocol):
    async def list_agents(self, *, capability: str | None = None, kind: str | None = None) -> list[AgentInfo]: ...

    async def spawn_agent(
        self, *, kind: str = "coder", capabilities: list[str] | None = None, workspace_id: str = DEFAULT_WORKSPACE
    ) -> AgentInfo: ...

    async def kill_agent(self, agent_id: str, *, force: bool = False) -> None: ...


@runtime_checkable
class DelegationClient(Protocol):
    async def delegate(
        self,
        instruction: str,
        *,
        parent_thread_id: str,
        agent_id: str | None = None,
        capability: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> TaskInfo:
        """``config``: the assistant config the task's agent builds its graph with (model, prompt,
        MCP servers, ...); passed only when the delegating assistant sets one."""
        ...

    async def task_status(self, task_id: str) -> TaskInfo: ...

    async def cancel_task(self, task_id: str) -> TaskInfo: ...
