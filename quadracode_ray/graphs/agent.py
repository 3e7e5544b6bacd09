"""The agent graph: a ReAct loop over workspace tools that ends with a result.

Factory::

    build_agent_graph(*, model: ChatModel, workspace: WorkspaceClient, checkpointer=None,
                      namespace=None, agent_id=None, extra_tools=(), system_prompt=None,
                      context=ContextPolicy(), guardrails=Guardrails(), stop=None,
                      ask_human=True, settings=None) -> CompiledStateGraph

    graph(config: RunnableConfig) -> CompiledStateGraph   # per-run factory for graph registries

Input (``AgentState``)::

    {"task": "write hello.py that prints 42 and run it", "task_id": "t-1"}   # or "messages": [...]

Output: the state, whose ``result`` is TaskResult-compatible once the run ends normally::

    {"task_id": "t-1", "agent_id": ..., "status": "succeeded" | "failed" | "cancelled",
     "output": "42", "error": None, "artifacts": ["hello.py"]}

``result`` is set by the model's ``finish`` tool call, or from its last plain answer. A run
that halts (guardrail, emergency stop, ``ask_human``) ends with an interrupt instead
(``__interrupt__`` in the output); resume with ``Command(resume=...)``. Tools: exec, read_file,
write_file, list_files, snapshot, ask_human, finish, plus ``extra_tools``.

Run each delegated task on its own thread (``checkpoint.task_thread_id(task_id)``); the
checkpointer is used as given unless ``namespace`` is set (see ``graphs.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from quadracode_ray.config import Settings
from quadracode_ray.graphs.assistant_config import (
    AssistantConfigurable,
    context_policy,
    host_guardrails,
    host_settings,
    read_assistant_config,
    with_assistant_guardrails,
)
from quadracode_ray.graphs.budgets import Budgets, injected_budgets
from quadracode_ray.graphs.checkpoint import namespaced
from quadracode_ray.graphs.context import ContextPolicy, context_policy_from_settings
from quadracode_ray.graphs.control import Guardrails, GuardrailSource, StopSignal
from quadracode_ray.graphs.react import (
    ASK_HUMAN,
    FINISH,
    ReactCore,
    ReactState,
    current_step,
    fresh_budget,
    last_text,
)
from quadracode_ray.interfaces import WorkspaceClient, WorkspaceError
from quadracode_ray.llm.base import ChatModel
from quadracode_ray.llm.factory import shared_chat_model
from quadracode_ray.tools.base import Tool
from quadracode_ray.tools.mcp_tools import ToolSource, mcp_tool_source
from quadracode_ray.tools.workspace_tools import workspace_tools

AGENT_SYSTEM_PROMPT = """You are a Quadracode-Ray agent. You carry out one delegated task in your workspace,
a sandboxed Linux container (files under /workspace, a /shared folder for hand-offs).
Use the tools: exec runs shell commands, read_file/write_file/list_files handle files, snapshot saves
the workspace. Work step by step, check your results, and when the task is done call finish with a
short, concrete output (what you did and what came out). If you are blocked, call finish with
status "failed" and say why."""


class AgentState(ReactState, total=False):
    task: str
    task_id: str
    result: dict[str, Any] | None


def build_agent_graph(*, model: ChatModel, workspace: WorkspaceClient,
                      checkpointer: BaseCheckpointSaver | None = None, namespace: str | None = None,
                      agent_id: str | None = None, extra_tools: Sequence[Tool] = (),
                      system_prompt: str | None = None, context: ContextPolicy | None = None,
                      guardrails: Guardrails | GuardrailSource | None = None, stop: StopSignal | None = None,
                      ask_human: bool = True, settings: Settings | None = None,
                      tool_source: ToolSource | None = None, budgets: Budgets | None = None):
    if settings is not None:
        from quadracode_ray.persistence.guardrails import settings_guardrails

        guardrails = guardrails or settings_guardrails(settings)  # an operator's edits apply live
        context = context or context_policy_from_settings(settings)
        budgets = budgets or Budgets.from_settings(settings)
    tools = [*workspace_tools(workspace), *extra_tools, *([ASK_HUMAN] if ask_human else []), FINISH]
    core = ReactCore(model=model, tools=tools, system_prompt=system_prompt or AGENT_SYSTEM_PROMPT,
                     workspace=workspace, policy=context or ContextPolicy(), guardrails=guardrails or Guardrails(),
                     stop=stop, tool_source=tool_source, done_route="respond", stop_route="complete",
                     budgets=budgets or Budgets())

    async def start(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        update: dict[str, Any] = {**fresh_budget(), "result": None, "stopped": False,
                                  "run_first_step": current_step(config)}
        if state.get("task") and not any(isinstance(m, HumanMessage) and m.content == state["task"]
                                         for m in state.get("messages") or []):
            update["messages"] = [HumanMessage(state["task"])]
        return update

    async def respond(state: AgentState) -> dict[str, Any]:
        return {"result": {"status": "succeeded", "output": last_text(state.get("messages") or [])}}

    async def complete(state: AgentState) -> dict[str, Any]:
        result = dict(state.get("result") or {})
        return {"result": {"task_id": state.get("task_id") or "", "agent_id": agent_id,
                           "status": result.get("status", "succeeded"), "output": result.get("output", ""),
                           "error": result.get("error") or (result.get("output") if result.get("status") == "failed"
                                                            else None),
                           "artifacts": list(state.get("artifacts") or [])}}

    def after_tools(state: AgentState) -> str:
        route = core.route_after_tools(state)
        return "complete" if route == "__end__" else route

    graph = StateGraph(AgentState, context_schema=AssistantConfigurable)
    graph.add_node("start", start)
    graph.add_node("model", core.model_node)
    graph.add_node("tools", core.tools_node)
    graph.add_node("halt", core.halt_node, destinations=("model", "tools", "complete"))
    graph.add_node("respond", respond)
    graph.add_node("complete", complete)
    graph.add_edge(START, "start")
    graph.add_edge("start", "model")
    graph.add_conditional_edges("model", core.route_after_model, ["tools", "halt", "respond"])
    graph.add_conditional_edges("tools", after_tools, ["model", "halt", "complete"])
    graph.add_edge("respond", "complete")
    graph.add_edge("complete", END)
    return graph.compile(checkpointer=namespaced(checkpointer, namespace), name="agent")


class _NoWorkspace:
    """Stands in when a run brings no workspace: every tool call explains the problem."""

    workspace_id = "none"

    def __getattr__(self, name: str):
        async def refuse(*args, **kwargs):
            raise WorkspaceError("this agent run has no workspace (put a WorkspaceClient in "
                                 "config['configurable']['workspace'])")

        return refuse


def graph(config: RunnableConfig) -> Any:
    """The agent for one run, from ``config["configurable"]``: the assistant's settings (see
    ``graphs.assistant_config``: ``model``, ``system_prompt``, ``context_token_budget``,
    ``guardrails``, ``mcp_servers``; defaults from the installation's settings) and the clients
    the host put there (``workspace``, ``agent_id``, ``stop``, ``events``, the ``guardrails``
    source). So two assistants of this graph can differ in model, prompt, budget, limits and
    tools. The caller attaches the checkpointer. This is what ``quadracode_ray.graphs.agent:graph``
    names in a graph registry."""
    configurable = config.get("configurable") or {}
    settings = host_settings(configurable)
    assistant = read_assistant_config(configurable)
    given = configurable.get("model")
    model = given if isinstance(given, ChatModel) else shared_chat_model(assistant.model, settings)
    workspace = configurable.get("workspace") or _NoWorkspace()
    base = host_guardrails(configurable, settings)
    return build_agent_graph(model=model, workspace=workspace, agent_id=configurable.get("agent_id"),
                             stop=configurable.get("stop"), budgets=injected_budgets(configurable),
                             guardrails=with_assistant_guardrails(base, assistant.guardrails),
                             system_prompt=assistant.system_prompt, context=context_policy(assistant, settings),
                             tool_source=mcp_tool_source(assistant.mcp_servers, workspace, settings.mcp_headers,
                                                         configurable.get("events")),
                             settings=settings)
