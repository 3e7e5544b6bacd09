"""What an agent thinks with, behind one small interface, chosen by import path.

``settings.agent_brain`` names a factory; it is called once per agent with those of
``settings``, ``agent_id``, ``kind``, ``capabilities`` it accepts, and returns either an
``AgentBrain`` or a LangGraph graph (anything with ``ainvoke``), which ``GraphBrain`` adapts:
the graph gets ``{"messages": [instruction]}`` and the workspace client in
``config["configurable"]["workspace"]``; its last message (or a ``result`` key) is the output.
"""

from __future__ import annotations

import inspect
import shlex
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from actors.common import call_with_supported, load_object, to_jsonable
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.fleet import TaskResult
from quadracode_ray.interfaces.workspace import WorkspaceClient


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_id: str
    instruction: str
    parent_thread_id: str
    agent_id: str
    attempt: int = 0
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


@runtime_checkable
class AgentBrain(Protocol):
    async def run(self, task: TaskRequest, workspace: WorkspaceClient) -> TaskResult:
        """Do the task, touching files and running commands only through ``workspace``."""
        ...


class ScriptBrain:
    """The default brain: deterministic, offline, useful for demos and smoke tests.

    Each line of the instruction is a step: ``run: <command>`` executes in the workspace,
    ``write <path>: <text>`` writes a file, ``read <path>`` reads one; other lines are echoed.
    A command that exits non-zero fails the task with its stderr.
    """

    async def run(self, task: TaskRequest, workspace: WorkspaceClient) -> TaskResult:
        outputs: list[str] = []
        artifacts: list[str] = []
        for line in (raw.strip() for raw in task.instruction.splitlines()):
            if not line:
                continue
            if line.startswith("run:"):
                result = await workspace.exec(line[4:].strip(), timeout=300)
                outputs.append(result.stdout)
                if result.exit_code != 0:
                    return TaskResult(task_id=task.task_id, agent_id=task.agent_id, status="failed",
                                      output="".join(outputs), artifacts=artifacts,
                                      error=f"command exited {result.exit_code}: {result.stderr.strip()[:2000]}")
            elif line.startswith("write ") and ":" in line:
                path, _, text = line[6:].partition(":")
                await workspace.write_file(path.strip(), text.strip() + "\n")
                artifacts.append(path.strip())
                outputs.append(f"wrote {path.strip()}\n")
            elif line.startswith("read "):
                data = await workspace.read_file(shlex.split(line[5:])[0])
                outputs.append(data.decode("utf-8", "replace"))
            else:
                outputs.append(line + "\n")
        return TaskResult(task_id=task.task_id, agent_id=task.agent_id, status="succeeded",
                          output="".join(outputs), artifacts=artifacts)


class GraphBrain:
    """Adapts a LangGraph agent graph to AgentBrain."""

    def __init__(self, graph: Any):
        self.graph = graph

    async def run(self, task: TaskRequest, workspace: WorkspaceClient) -> TaskResult:
        config = {"configurable": {"thread_id": f"task:{task.task_id}:{task.attempt}", "workspace": workspace,
                                   "agent_id": task.agent_id, "task_id": task.task_id}}
        state = await self.graph.ainvoke({"messages": [{"role": "user", "content": task.instruction}]}, config)
        return TaskResult(task_id=task.task_id, agent_id=task.agent_id, status="succeeded",
                          output=_final_text(state))


def _final_text(state: Any) -> str:
    if isinstance(state, dict):
        if isinstance(state.get("result"), str):
            return state["result"]
        messages = state.get("messages") or []
        if messages:
            last = messages[-1]
            content = last.get("content") if isinstance(last, dict) else getattr(last, "content", last)
            return content if isinstance(content, str) else str(to_jsonable(content))
    return str(to_jsonable(state))


def build_default_brain() -> AgentBrain:
    return ScriptBrain()


def load_brain(path: str, *, settings: Settings, agent_id: str, kind: str, capabilities: list[str]) -> AgentBrain:
    factory = load_object(path)
    made = call_with_supported(factory, settings=settings, agent_id=agent_id, kind=kind, capabilities=capabilities) \
        if callable(factory) and not hasattr(factory, "ainvoke") else factory
    if inspect.isawaitable(made):
        raise TypeError(f"agent brain factory {path!r} must be synchronous")
    if hasattr(made, "run") and not hasattr(made, "ainvoke"):
        return made
    if hasattr(made, "compile") and not hasattr(made, "ainvoke"):
        made = made.compile()
    if hasattr(made, "ainvoke"):
        return GraphBrain(made)
    raise TypeError(f"{path!r} gave {type(made).__name__}: expected an AgentBrain (async run) or a LangGraph graph")
