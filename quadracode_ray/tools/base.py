"""The Tool type and how graphs invoke one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.errors import GraphBubbleUp
from pydantic import BaseModel, ValidationError

from quadracode_ray.interfaces import FleetError, WorkspaceClient, WorkspaceError
from quadracode_ray.llm.base import ToolSpec
from quadracode_ray.tools.output import OutputBounds, bound_output


@dataclass
class ToolContext:
    thread_id: str
    workspace: WorkspaceClient | None
    policy: OutputBounds
    call_id: str = ""


@dataclass
class ToolOutcome:
    content: str
    is_error: bool = False
    state_update: dict[str, Any] = field(default_factory=dict)
    """Extra graph-state writes (e.g. a delegated task to track)."""
    event: dict[str, Any] | None = None
    """A custom stream event for watchers (e.g. ``task_delegated``)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args_model: type[BaseModel]
    run: Callable[[Any, ToolContext], Awaitable[ToolOutcome | str | dict | list]]
    parameters: dict[str, Any] | None = None
    """The arguments' JSON schema when it is not ``args_model``'s (an MCP server's tool)."""

    @property
    def spec(self) -> ToolSpec:
        if self.parameters is not None:
            return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)


def error_outcome(message: str) -> ToolOutcome:
    return ToolOutcome(content=json.dumps({"error": message}), is_error=True)


async def invoke_tool(tool: Tool, raw_args: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
    """Run a tool; argument and domain errors become error outcomes the model can read."""
    try:
        args = tool.args_model.model_validate(raw_args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors())
        return error_outcome(f"invalid arguments for {tool.name}: {problems}")
    try:
        result = await tool.run(args, ctx)
    except GraphBubbleUp:
        raise  # interrupts and commands belong to LangGraph
    except (WorkspaceError, FleetError, ValueError) as exc:
        return error_outcome(f"{type(exc).__name__}: {exc}")
    outcome = result if isinstance(result, ToolOutcome) else ToolOutcome(
        content=result if isinstance(result, str) else json.dumps(result, default=str))
    outcome.content = await bound_output(outcome.content, workspace=ctx.workspace, policy=ctx.policy,
                                         name=f"{tool.name}-{ctx.call_id or 'output'}")
    return outcome
