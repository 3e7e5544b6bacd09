"""The orchestrator graph: answers, uses its workspace, and runs a fleet without ever blocking.

Factory::

    build_orchestrator_graph(*, model: ChatModel, workspace: WorkspaceClient | None,
                             fleet: FleetClient | None, delegation: DelegationClient | None,
                             checkpointer=None, namespace=None, guardrails=Guardrails(),
                             stop=None, context=ContextPolicy(), system_prompt=None,
                             extra_tools=(), settings=None, tool_source=None, budgets=None,
                             task_config=None) -> CompiledStateGraph

    graph(config: RunnableConfig) -> CompiledStateGraph   # per-run factory for graph registries

``settings`` supplies guardrail and context defaults (QUADRACODE_AUTONOMY_*, _CONTEXT_TOKEN_BUDGET)
when ``guardrails``/``context`` are not given. Nodes are async: use ainvoke/astream.

Input (``OrchestratorState``; every key optional, per run)::

    {"messages": [{"role": "user", "content": "..."}]}          # a user turn
    {"task_results": [TaskResult.model_dump(), ...]}             # agents' results arriving later
    Command(resume="continue" | "stop" | "<new instruction>" | {"action": ..., "message": ...})

Output state::

    messages       the whole conversation (LangChain messages; the answer is the last AIMessage).
                   A folded result is a HumanMessage named "task_result" whose text starts with
                   "[task <task_id> <status> by agent <agent_id>]".
    tasks          {task_id: TaskInfo-like dict with the latest known status}
    iterations, autonomy_started_at, agents_spawned   guardrail counters
    spent, budget_from   tokens, cost and model calls of the thread, its tasks' included
                   (``graphs.budgets``; a "budget" halt when ``settings.budget_thread_*`` is reached)
    halt           the pending halt ({"kind", "reason", "resume_to"}) while interrupted
    stopped        True when the human stopped the last turn
    artifacts      workspace paths written by write_file
    run_first_step internal: where this invocation started (to halt before the recursion limit)
    __interrupt__  (run output only) the interrupt payloads: {"type": "guardrail" | "emergency_stop"
                   | "model_error" | "question", "reason"/"question", "options": [...]}.
                   Halts (all but "question") resume with "continue" (fresh budget, retries the
                   step), "stop" (ends the turn, stopped=True) or new instruction text;
                   a "question" resumes with the answer. New input instead of a resume also
                   works: open tool calls are closed as skipped.

Emergency stop: pass ``stop=StopRegistry()`` (or any StopSignal) and call
``stop.stop(thread_id)`` from anywhere; the running node is cancelled and the thread halts.

Delegation is non-blocking: ``delegate`` returns a task id at once and the run ends; the actor
later starts a run on the same thread with ``{"task_results": [...]}``, which is folded into
the conversation (and streamed as a ``task_result`` custom event) before the model reacts.
Custom stream events (``stream_mode="custom"``) are listed in ``quadracode_ray.graphs.react``.
The checkpointer is used as given unless ``namespace`` is set (see ``graphs.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from quadracode_ray.config import Settings
from quadracode_ray.graphs.assistant_config import (
    AssistantConfigurable,
    context_policy,
    delegated_task_config,
    host_guardrails,
    host_settings,
    read_assistant_config,
    with_assistant_guardrails,
)
from quadracode_ray.graphs.budgets import Budgets, add_spent, injected_budgets
from quadracode_ray.graphs.checkpoint import namespaced
from quadracode_ray.graphs.context import ContextPolicy, context_policy_from_settings
from quadracode_ray.graphs.control import Guardrails, GuardrailSource, StopSignal
from quadracode_ray.graphs.react import (
    ASK_HUMAN,
    ReactCore,
    ReactState,
    _writer,
    close_pending_tool_calls,
    current_step,
    fresh_budget,
)
from quadracode_ray.interfaces import DelegationClient, FleetClient, TaskResult, WorkspaceClient
from quadracode_ray.llm.base import ChatModel
from quadracode_ray.llm.factory import shared_chat_model
from quadracode_ray.tools.base import Tool
from quadracode_ray.tools.fleet_tools import fleet_tools
from quadracode_ray.tools.mcp_tools import ToolSource, mcp_tool_source
from quadracode_ray.tools.workspace_tools import workspace_tools

TASK_RESULT_NAME = "task_result"

ORCHESTRATOR_SYSTEM_PROMPT = """You are the orchestrator of Quadracode-Ray, an always-on runtime for agent work.
Answer directly when you can. For work, either use your own workspace tools (exec, files, snapshot) or
delegate to agents: list_agents, spawn_agent, delegate. Delegation never blocks: delegate returns a task id
at once; tell the user the work is under way. Agent results arrive later as messages starting with
"[task <id> <status> by agent <id>]": report them to the user. You can check_task, cancel_task and
kill_agent (hotpath agents need force). Ask the human with ask_human when a decision is theirs."""


class OrchestratorState(ReactState, total=False):
    task_results: list[dict[str, Any]]


def format_task_result(result: TaskResult) -> str:
    head = f"[task {result.task_id} {result.status} by agent {result.agent_id or 'unknown'}]"
    body = result.output.strip() or "(no output)"
    if result.error:
        body += f"\nerror: {result.error}"
    if result.artifacts:
        body += "\nartifacts: " + ", ".join(result.artifacts)
    return f"{head}\n{body}"


def build_orchestrator_graph(*, model: ChatModel, workspace: WorkspaceClient | None,
                             fleet: FleetClient | None, delegation: DelegationClient | None,
                             checkpointer: BaseCheckpointSaver | None = None, namespace: str | None = None,
                             guardrails: Guardrails | GuardrailSource | None = None, stop: StopSignal | None = None,
                             context: ContextPolicy | None = None, system_prompt: str | None = None,
                             extra_tools: Sequence[Tool] = (), settings: Settings | None = None,
                             tool_source: ToolSource | None = None, budgets: Budgets | None = None,
                             task_config: dict[str, Any] | None = None):
    if settings is not None:
        from quadracode_ray.persistence.guardrails import settings_guardrails

        guardrails = guardrails or settings_guardrails(settings)  # an operator's edits apply live
        context = context or context_policy_from_settings(settings)
        budgets = budgets or Budgets.from_settings(settings)
    tools = [*(workspace_tools(workspace) if workspace is not None else []), *fleet_tools(fleet, delegation, task_config),
             *extra_tools, ASK_HUMAN]
    core = ReactCore(model=model, tools=tools, system_prompt=system_prompt or ORCHESTRATOR_SYSTEM_PROMPT,
                     workspace=workspace, policy=context or ContextPolicy(), guardrails=guardrails or Guardrails(),
                     stop=stop, tool_source=tool_source, done_route="__end__", budgets=budgets or Budgets())

    async def ingest(state: OrchestratorState, config: RunnableConfig) -> dict[str, Any]:
        """Fold arrived task results into the thread; a new human turn restarts the autonomy budget."""
        raw = state.get("task_results") or []
        results = [TaskResult.model_validate(item) for item in raw]  # bad input fails the run, changes nothing
        messages = state.get("messages") or []
        update: dict[str, Any] = {"task_results": [], "halt": None, "stopped": False,
                                  "run_first_step": current_step(config)}
        new_human_turn = isinstance(messages[-1] if messages else None, HumanMessage) and \
            messages[-1].name != TASK_RESULT_NAME
        if new_human_turn:
            update.update(fresh_budget())
            update["agents_spawned"] = state.get("agents_spawned") or 0  # the agent cap counts per thread
        folded: list[Any] = []
        closing = close_pending_tool_calls(messages)
        if closing and new_human_turn:
            # Input arrived at a halt: the open calls are closed *before* the new human turn,
            # which is moved after them (removed and re-added under a new id).
            turn = messages[-1]
            folded = [RemoveMessage(id=turn.id), *closing, turn.model_copy(update={"id": None})]
        elif closing:
            folded = list(closing)
        if results:
            write = _writer()
            folded += [HumanMessage(format_task_result(r), name=TASK_RESULT_NAME) for r in results]
            update["tasks"] = {r.task_id: {**(state.get("tasks") or {}).get(r.task_id, {}), "task_id": r.task_id,
                                           "agent_id": r.agent_id, "status": r.status} for r in results}
            for r in results:
                write({"event": "task_result", "result": r.model_dump(mode="json")})
            if any(r.usage for r in results):  # a thread's spend includes its delegated tasks'
                spent = state.get("spent")
                for r in results:
                    spent = add_spent(spent, r.usage)
                update["spent"] = spent
        if folded:
            update["messages"] = folded
        return update

    graph = StateGraph(OrchestratorState, context_schema=AssistantConfigurable)
    graph.add_node("ingest", ingest)
    graph.add_node("model", core.model_node)
    graph.add_node("tools", core.tools_node)
    graph.add_node("halt", core.halt_node, destinations=("model", "tools", END))
    graph.add_edge(START, "ingest")
    graph.add_edge("ingest", "model")
    graph.add_conditional_edges("model", core.route_after_model, ["tools", "halt", END])
    graph.add_conditional_edges("tools", core.route_after_tools, ["model", "halt", END])
    return graph.compile(checkpointer=namespaced(checkpointer, namespace), name="orchestrator")


def graph(config: RunnableConfig) -> Any:
    """The orchestrator for one run, from ``config["configurable"]``: the assistant's settings
    (see ``graphs.assistant_config``: ``model``, ``system_prompt``, ``context_token_budget``,
    ``guardrails``, ``mcp_servers``; defaults from the installation's settings) and the clients
    the caller put there (``workspace``, ``fleet``, ``delegation``, ``stop``, ``events``, the
    ``guardrails`` source, the ``budgets``). Tools whose client is missing are left out. The caller attaches the
    checkpointer (``namespaced(saver, ns)`` to isolate it). This is what
    ``quadracode_ray.graphs.orchestrator:graph`` names in a graph registry."""
    configurable = config.get("configurable") or {}
    settings = host_settings(configurable)
    assistant = read_assistant_config(configurable)
    given = configurable.get("model")
    model = given if isinstance(given, ChatModel) else shared_chat_model(assistant.model, settings)
    guardrails = with_assistant_guardrails(host_guardrails(configurable, settings), assistant.guardrails)
    return build_orchestrator_graph(model=model, workspace=configurable.get("workspace"),
                                    fleet=configurable.get("fleet"), delegation=configurable.get("delegation"),
                                    stop=configurable.get("stop"), guardrails=guardrails,
                                    budgets=injected_budgets(configurable),
                                    system_prompt=assistant.system_prompt, context=context_policy(assistant, settings),
                                    tool_source=mcp_tool_source(assistant.mcp_servers, configurable.get("workspace"),
                                                                settings.mcp_headers, configurable.get("events")),
                                    task_config=delegated_task_config(assistant), settings=settings)
