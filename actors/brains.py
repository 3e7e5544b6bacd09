"""What an agent thinks with, behind one small interface, chosen by import path.

``settings.agent_brain`` names a factory; it is called once per agent with those of
``settings``, ``agent_id``, ``kind``, ``capabilities`` it accepts, and returns either an
``AgentBrain`` or a LangGraph graph (anything with ``ainvoke``), which ``GraphBrain`` adapts:
the graph gets ``{"messages": [instruction]}`` and the workspace client in
``config["configurable"]["workspace"]``; its last message (or a ``result`` key) is the output.

A task may carry an assistant config (``metadata["assistant_config"]``: what the delegating
assistant sets for its agents, ``graphs.assistant_config.delegated_task_config``). A graph
factory then builds the task's graph with it: ``model``, ``system_prompt``, ``context``,
``guardrails`` and ``tool_source`` (the MCP servers' tools, stdio ones in this agent's
workspace) for those keys the config sets; one graph per distinct config, kept for later tasks.
"""

from __future__ import annotations

import inspect
import json
import logging
import shlex
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from actors.common import accepted_parameters, call_with_supported, load_object, to_jsonable
from quadracode_ray.config import Settings
from quadracode_ray.graphs.assistant_config import AssistantConfigurable, read_assistant_config
from quadracode_ray.interfaces.fleet import TaskResult
from quadracode_ray.interfaces.workspace import WorkspaceClient

log = logging.getLogger(__name__)
ASSISTANT_CONFIG_KEY = "assistant_config"
"""In a task's metadata: the delegating assistant's config the task's graph is built with."""
MAX_GRAPHS = 16
"""Graphs a GraphBrain keeps, one per distinct assistant config (the least recently used go)."""


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
    """A brain without a model: deterministic, offline, useful for smoke tests and benchmarks.

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
    """Adapts a LangGraph agent graph to AgentBrain. The graph is built on the first task by
    ``build(workspace, checkpointer, assistant)``, with the agent's workspace client, the saver that
    ``checkpointer()`` gives (Postgres in an agent actor, so a task's thread outlives the agent) and
    the task's assistant config (None when it carries none); with ``per_config`` one graph is built
    per distinct config, else the first is used for every task."""

    def __init__(self, build: Callable[[WorkspaceClient, Any, AssistantConfigurable | None], Any],
                 checkpointer: Callable[[], Awaitable[Any]] | None = None, *, per_config: bool = False):
        self._build = build
        self._checkpointer = checkpointer or _in_memory_saver
        self._per_config = per_config
        self._graphs: OrderedDict[str, Any] = OrderedDict()
        self.graph: Any = None
        """The graph of the latest task."""

    async def run(self, task: TaskRequest, workspace: WorkspaceClient) -> TaskResult:
        carried = task.metadata.get(ASSISTANT_CONFIG_KEY)
        # A bad config fails the task with AssistantConfigError, saying which key.
        assistant = read_assistant_config(carried) if isinstance(carried, dict) and carried else None
        key = json.dumps(carried, sort_keys=True) if assistant is not None and self._per_config else ""
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._build(workspace, await self._checkpointer(), assistant)
            while len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        self.graph = graph
        config = {"configurable": {"thread_id": f"task:{task.task_id}:{task.attempt}", "workspace": workspace,
                                   "agent_id": task.agent_id, "task_id": task.task_id}}
        graph_input = {"messages": [{"role": "user", "content": task.instruction}], "task": task.instruction,
                       "task_id": task.task_id}
        state = await graph.ainvoke(graph_input, config)
        return _result_of(task, state)


async def _in_memory_saver() -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    return InMemorySaver()


class PostgresCheckpointer:
    """One AsyncPostgresSaver per agent process, on a small pool opened on first use (inside the
    actor's event loop). Without a database URL it falls back to memory, said in the log."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._saver: Any = None

    async def __call__(self) -> Any:
        if self._saver is None:
            if not self._settings.database_url:
                log.warning("no database_url: agent graphs are checkpointed in memory only")
                self._saver = await _in_memory_saver()
            else:
                from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

                from quadracode_ray.persistence import open_async_pool

                pool = await open_async_pool(self._settings.database_url, min_size=1, max_size=2,
                                             name="agent-checkpoints")
                self._saver = AsyncPostgresSaver(pool)
        return self._saver


def _result_of(task: TaskRequest, state: Any) -> TaskResult:
    base: dict[str, Any] = {"task_id": task.task_id, "agent_id": task.agent_id}
    if isinstance(state, dict) and isinstance(state.get("spent"), dict):
        base["usage"] = state["spent"]  # the thread's spend then includes its tasks'
    if isinstance(state, dict):
        if state.get("__interrupt__"):
            return TaskResult(**base, status="failed",
                              error=f"the agent stopped for human input: {to_jsonable(state['__interrupt__'])}")
        result = state.get("result")
        if isinstance(result, dict) and result.get("status") in ("succeeded", "failed", "cancelled"):
            return TaskResult(**base, status=result["status"], output=str(result.get("output") or ""),
                              error=result.get("error"), artifacts=[str(a) for a in result.get("artifacts") or []])
        if isinstance(result, str):
            return TaskResult(**base, status="succeeded", output=result)
        messages = state.get("messages") or []
        if messages:
            last = messages[-1]
            content = last.get("content") if isinstance(last, dict) else getattr(last, "content", last)
            text = content if isinstance(content, str) else str(to_jsonable(content))
            return TaskResult(**base, status="succeeded", output=text)
    return TaskResult(**base, status="succeeded", output=str(to_jsonable(state)))


def build_script_brain() -> AgentBrain:
    """The deterministic brain without a model (``QUADRACODE_AGENT_BRAIN=actors.brains:build_script_brain``)."""
    return ScriptBrain()


build_default_brain = build_script_brain  # the name this brain had first


def _chat_model(settings: Settings, spec: str | None = None) -> Any:
    from quadracode_ray.llm import make_chat_model

    return make_chat_model(spec or settings.default_model, settings)


def _assistant_arguments(assistant: AssistantConfigurable | None, settings: Settings,
                         workspace: WorkspaceClient) -> dict[str, Callable[[], Any]]:
    """The graph factory's arguments a task's assistant config sets (made when passed)."""
    if assistant is None:
        return {}
    from actors.workspaces import BusEventReporter
    from quadracode_ray.graphs.assistant_config import context_policy, with_assistant_guardrails
    from quadracode_ray.persistence.guardrails import settings_guardrails
    from quadracode_ray.tools.mcp_tools import mcp_tool_source

    arguments: dict[str, Callable[[], Any]] = {}
    if assistant.model:
        arguments["model"] = lambda: _chat_model(settings, assistant.model)
    if assistant.system_prompt:
        arguments["system_prompt"] = lambda: assistant.system_prompt
    if assistant.context_token_budget:
        arguments["context"] = lambda: context_policy(assistant, settings)
    if assistant.guardrails is not None:
        arguments["guardrails"] = lambda: with_assistant_guardrails(settings_guardrails(settings),
                                                                    assistant.guardrails)
    if assistant.mcp_servers:
        arguments["tool_source"] = lambda: mcp_tool_source(assistant.mcp_servers, workspace, settings.mcp_headers,
                                                           BusEventReporter(settings, "agent"))
    return arguments


def _build_with_config(factory: Callable, path: str, common: dict[str, Any], settings: Settings,
                       workspace: WorkspaceClient, saver: Any, assistant: AssistantConfigurable | None) -> Any:
    """The factory's graph for one assistant config: what the config sets must be taken."""
    configured = _assistant_arguments(assistant, settings, workspace)
    accepted = accepted_parameters(factory)
    if accepted is not None and (refused := sorted(set(configured) - accepted)):
        raise TypeError(f"the agent brain {path!r} takes no {', '.join(refused)}: it cannot apply the task's "
                        "assistant config")
    lazy = {"model": lambda: _chat_model(settings), "checkpointer": lambda: saver, **configured}
    if accepted is None:  # **kwargs: give what the config sets, made now
        common = {**common, **{name: make() for name, make in configured.items()}}
    return _graph(call_with_supported(factory, lazy=lazy, workspace=workspace, **common), path, saver)


def load_brain(path: str, *, settings: Settings, agent_id: str, kind: str, capabilities: list[str],
               checkpointer: Callable[[], Awaitable[Any]] | None = None) -> AgentBrain:
    """The brain ``path`` names: an AgentBrain factory, a graph, or a graph factory (which may take
    ``model``, ``workspace``, ``checkpointer``, ``agent_id``, ``settings``, ``kind``, ``capabilities``,
    and, for tasks carrying an assistant config, ``system_prompt``, ``context``, ``guardrails``,
    ``tool_source``).

    Graphs get their checkpointer from ``checkpointer()`` (default: Postgres when the settings
    have a database URL) unless they were compiled with one of their own. Only a factory taking
    ``workspace`` or ``checkpointer`` (the built-in agent graph's) is built per assistant config;
    other brains see the config in ``task.metadata`` only."""
    checkpointer = checkpointer or PostgresCheckpointer(settings)
    factory = load_object(path)
    if hasattr(factory, "ainvoke") or hasattr(factory, "compile"):
        return GraphBrain(lambda _workspace, saver, _assistant: _graph(factory, path, saver), checkpointer)
    if not callable(factory):
        raise TypeError(f"{path!r} is a {type(factory).__name__}: expected a brain factory or a LangGraph graph")
    common = {"settings": settings, "agent_id": agent_id, "kind": kind, "capabilities": capabilities}
    model = {"model": lambda: _chat_model(settings)}
    accepted = accepted_parameters(factory)
    if accepted is not None and accepted & {"workspace", "checkpointer"}:
        # A graph factory that needs the workspace or the saver: build it on the first task.
        return GraphBrain(lambda workspace, saver, assistant: _build_with_config(
            factory, path, common, settings, workspace, saver, assistant), checkpointer, per_config=True)
    made = call_with_supported(factory, lazy=model, **common)
    if inspect.isawaitable(made):
        raise TypeError(f"agent brain factory {path!r} must be synchronous")
    if hasattr(made, "run") and not hasattr(made, "ainvoke"):
        return made
    _graph(made, path, None)  # refuse a wrong type now, not at the first task
    return GraphBrain(lambda _workspace, saver, _assistant: _graph(made, path, saver), checkpointer)


def _graph(made: Any, path: str, saver: Any) -> Any:
    """A runnable graph: a StateGraph compiled with ``saver``; a compiled graph given ``saver``
    unless it has a checkpointer of its own."""
    if hasattr(made, "compile") and not hasattr(made, "ainvoke"):
        return made.compile(checkpointer=saver) if saver is not None else made
    if not hasattr(made, "ainvoke"):
        raise TypeError(f"{path!r} gave {type(made).__name__}: expected an AgentBrain (async run) or a LangGraph graph")
    if saver is not None and getattr(made, "checkpointer", None) is None:
        return made.copy(update={"checkpointer": saver})
    return made
