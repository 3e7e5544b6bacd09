"""list_agents, spawn_agent, delegate, check_task, cancel_task and kill_agent."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.interfaces import DelegationClient, FleetClient
from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE
from quadracode_ray.tools.base import Tool, ToolContext, ToolOutcome


class ListAgentsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = None
    capability: str | None = None


class SpawnArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(default="coder", min_length=1, max_length=64)
    capabilities: list[str] | None = None
    workspace_id: str = DEFAULT_WORKSPACE


class DelegateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str = Field(min_length=1, description="What the agent should do, self-contained.")
    agent_id: str | None = Field(default=None, description="A specific agent; else one is chosen.")
    capability: str | None = None


class TaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: str = Field(min_length=1)


class KillArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(min_length=1)
    force: bool = Field(default=False, description="Needed for hotpath agents.")


def _task_dict(task) -> dict:
    return task.model_dump(mode="json")


def fleet_tools(fleet: FleetClient | None, delegation: DelegationClient | None,
                task_config: dict[str, Any] | None = None) -> list[Tool]:
    """``task_config``: the assistant config each delegated task carries to its agent (model,
    prompt, MCP servers, ...; see ``graphs.assistant_config.delegated_task_config``)."""
    tools: list[Tool] = []
    carried = {"config": task_config} if task_config else {}  # a client without config support still works
    if fleet is not None:
        async def run_list(args: ListAgentsArgs, ctx: ToolContext):
            agents = await fleet.list_agents(capability=args.capability, kind=args.kind)
            return [a.model_dump(mode="json") for a in agents]

        async def run_spawn(args: SpawnArgs, ctx: ToolContext):
            agent = await fleet.spawn_agent(kind=args.kind, capabilities=args.capabilities,
                                            workspace_id=args.workspace_id)
            return ToolOutcome(content=agent.model_dump_json(), state_update={"agents_spawned": 1},
                               event={"event": "agent_spawned", "agent": agent.model_dump(mode="json")})

        async def run_kill(args: KillArgs, ctx: ToolContext):
            await fleet.kill_agent(args.agent_id, force=args.force)
            return {"killed": args.agent_id}

        tools += [
            Tool("list_agents", "List live agents (optionally of one kind or capability).", ListAgentsArgs, run_list),
            Tool("spawn_agent", "Start a new agent of a kind (coder, tester, ...).", SpawnArgs, run_spawn),
            Tool("kill_agent", "Stop an agent. Hotpath agents need force=true.", KillArgs, run_kill),
        ]
    if delegation is not None:
        async def run_delegate(args: DelegateArgs, ctx: ToolContext):
            task = await delegation.delegate(args.instruction, parent_thread_id=ctx.thread_id,
                                             agent_id=args.agent_id, capability=args.capability, **carried)
            data = _task_dict(task)
            return ToolOutcome(content=task.model_dump_json(), state_update={"tasks": {task.task_id: data}},
                               event={"event": "task_delegated", "task": data})

        async def run_status(args: TaskArgs, ctx: ToolContext):
            task = await delegation.task_status(args.task_id)
            return ToolOutcome(content=task.model_dump_json(), state_update={"tasks": {task.task_id: _task_dict(task)}})

        async def run_cancel(args: TaskArgs, ctx: ToolContext):
            task = await delegation.cancel_task(args.task_id)
            return ToolOutcome(content=task.model_dump_json(), state_update={"tasks": {task.task_id: _task_dict(task)}})

        tools += [
            Tool("delegate", "Hand a task to an agent. Returns at once with a task id; the result arrives "
                 "later in this conversation.", DelegateArgs, run_delegate),
            Tool("check_task", "The current status of a delegated task.", TaskArgs, run_status),
            Tool("cancel_task", "Cancel a delegated task that has not finished.", TaskArgs, run_cancel),
        ]
    return tools

