"""The ReAct machinery both graphs share: state, the model node, the tools node, the halt node.

Nodes call the ``ChatModel`` interface directly (no LangChain chat-model wrapper) and emit
custom stream events through LangGraph's stream writer (``stream_mode="custom"``):
``{"event": "token", "text"}``, ``{"event": "tool_start", "name", "args", "tool_call_id"}``,
``{"event": "tool_end", "name", "tool_call_id", "is_error", "content"}``, ``task_delegated``,
``agent_spawned``, ``task_result``, ``halted``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    AnyMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import add_messages
from langgraph.types import Command, interrupt
from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray import tracing
from quadracode_ray.graphs.budgets import (
    Budgets,
    add_spent,
    budget_in_force,
    budget_reason,
    price_of,
    record_thread_spend,
    spent_of_call,
)
from quadracode_ray.graphs.context import ContextPolicy, fit_to_budget
from quadracode_ray.graphs.control import (
    EmergencyStopped,
    Guardrails,
    GuardrailSource,
    StopSignal,
    current_guardrails,
    guardrail_reason,
    race_stop,
)
from quadracode_ray.interfaces import WorkspaceClient
from quadracode_ray.llm.base import ChatModel, ModelReply, message_text
from quadracode_ray.llm.errors import ProviderError
from quadracode_ray.tools.base import Tool, ToolContext, invoke_tool


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


def merge_unique(left: list | None, right: list | None) -> list:
    out = list(left or [])
    out += [item for item in right or [] if item not in out]
    return out


class ReactState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    iterations: int
    autonomy_started_at: float
    agents_spawned: int
    halt: dict[str, Any] | None
    tasks: Annotated[dict[str, dict[str, Any]], merge_dicts]
    artifacts: Annotated[list[str], merge_unique]
    stopped: bool
    """True when the human ended the turn at a halt."""
    run_first_step: int
    """The superstep this invocation started at, to halt before LangGraph's recursion limit."""
    spent: dict[str, Any]
    """Tokens, cost and model calls of the whole thread (``graphs.budgets``); never reset."""
    budget_from: dict[str, Any]
    """``spent`` when the token/cost budget was last granted (a "continue" at a budget halt)."""


class AskHumanArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)


class FinishArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output: str = Field(description="The result to hand back: what was done and what came out.")
    status: str = Field(default="succeeded", pattern="^(succeeded|failed)$")


async def _never(args, ctx):  # ask_human and finish are handled by the tools node itself
    raise AssertionError("handled by the graph")


ASK_HUMAN = Tool("ask_human", "Ask the human a question and wait for the answer.", AskHumanArgs, _never)
FINISH = Tool("finish", "Finish the task and hand back the result.", FinishArgs, _never)


def thread_id_of(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("thread_id", ""))


def fresh_budget(now: float | None = None) -> dict[str, Any]:
    return {"iterations": 0, "autonomy_started_at": now or time.time(), "agents_spawned": 0, "halt": None}


def current_step(config: RunnableConfig) -> int:
    return int((config.get("metadata") or {}).get("langgraph_step", 0))


def _step_limit_reason(state: ReactState, config: RunnableConfig) -> str | None:
    """Halt (and ask) before LangGraph's recursion limit would fail the run: one model+tools
    round and the halt node must still fit."""
    limit = int(config.get("recursion_limit") or 25)
    used = current_step(config) - state.get("run_first_step", current_step(config))
    if used + 4 > limit:
        return f"this run used {used} of its {limit} steps (recursion_limit); continue to start a new run"
    return None


def _writer():
    try:
        return get_stream_writer()
    except RuntimeError:  # called outside a graph run
        return lambda _event: None


@dataclass
class ReactCore:
    model: ChatModel
    tools: Sequence[Tool]
    system_prompt: str
    workspace: WorkspaceClient | None
    policy: ContextPolicy
    guardrails: Guardrails | GuardrailSource
    stop: StopSignal | None
    done_route: str  # where a plain answer goes ("respond" or END)
    stop_route: str = "__end__"  # where a turn the human stopped goes
    tool_source: Callable[[str], Awaitable[Sequence[Tool]]] | None = None
    """More tools, listed once on first use (MCP servers' tools): thread_id -> tools."""
    budgets: Budgets = field(default_factory=Budgets)  # token/cost budgets and the price table

    def __post_init__(self) -> None:
        self.by_name = {tool.name: tool for tool in self.tools}
        self.specs = [tool.spec for tool in self.tools]
        self._sourced = self.tool_source is None
        self._source_lock: asyncio.Lock | None = None

    async def _source_tools(self, thread_id: str) -> None:
        """Add the tool source's tools (once; a built-in tool's name is never taken over)."""
        if self._sourced:
            return
        self._source_lock = self._source_lock or asyncio.Lock()
        async with self._source_lock:
            if self._sourced:
                return
            extra = [tool for tool in await self.tool_source(thread_id) if tool.name not in self.by_name]
            self.tools = [*self.tools, *extra]
            self.by_name.update({tool.name: tool for tool in extra})
            self.specs = [*self.specs, *(tool.spec for tool in extra)]
            self._sourced = True

    # --- model ---------------------------------------------------------------------------------
    async def model_node(self, state: ReactState, config: RunnableConfig) -> dict[str, Any]:
        thread_id = thread_id_of(config)
        if self.stop is not None and self.stop.is_set(thread_id):
            return {"halt": {"kind": "emergency_stop", "reason": "emergency stop requested", "resume_to": "model"}}
        guardrails = await current_guardrails(self.guardrails)
        reason = guardrail_reason(state, guardrails, time.time()) or _step_limit_reason(state, config)
        if reason:
            return {"halt": {"kind": "guardrail", "reason": reason, "resume_to": "model"}}
        # A delegated task's run names its task (actors.brains.GraphBrain); its budget is the task's.
        delegated = (config.get("configurable") or {}).get("task_id")
        budget = budget_in_force(self.budgets, guardrails.budgets, "task" if delegated else "thread")
        reason = budget_reason(state.get("spent"), state.get("budget_from"), budget)
        if reason:
            return {"halt": {"kind": "budget", "reason": reason, "resume_to": "model",
                             "spent": add_spent(state.get("spent"), None)}}
        await self._source_tools(thread_id)
        prompt = fit_to_budget([SystemMessage(self.system_prompt)], state.get("messages") or [], self.policy)
        try:
            with tracing.span("model_call", **{"llm.provider": self.model.provider, "llm.model": self.model.model,
                                               "llm.prompt_messages": len(prompt)}) as span:
                reply = await race_stop(self._stream_reply(prompt, config), self.stop, thread_id)
                if span is not None:
                    span.set_attribute("llm.token_count.prompt", reply.usage.input_tokens)
                    span.set_attribute("llm.token_count.completion", reply.usage.output_tokens)
        except EmergencyStopped:
            return {"halt": {"kind": "emergency_stop", "reason": "emergency stop during a model call",
                             "resume_to": "model"}}
        except ProviderError as exc:
            # Retries are exhausted or the provider refused (bad key, quota): the thread waits
            # for the human instead of failing, and "continue" tries again.
            return {"halt": {"kind": "model_error", "reason": str(exc), "resume_to": "model"}}
        call = spent_of_call(reply.usage, price_of(self.budgets.prices, priced_as(self.model)))
        record_thread_spend(thread_id, call)
        return {"messages": [reply.message], "iterations": (state.get("iterations") or 0) + 1,
                "spent": add_spent(state.get("spent"), call)}

    async def _stream_reply(self, prompt, config: RunnableConfig) -> ModelReply:
        """Stream one reply: tokens go out as ``token`` custom events and, through LangChain
        callbacks, as message chunks of ``stream_mode="messages"`` (as a LangChain chat model's
        would), so SDK clients and the panel see text as it is produced."""
        write = _writer()
        manager = AsyncCallbackManager.configure(inheritable_callbacks=config.get("callbacks"),
                                                 inheritable_tags=config.get("tags"),
                                                 inheritable_metadata=config.get("metadata"),
                                                 # LangChain's names, so stream metadata says which model spoke.
                                                 local_metadata={"ls_provider": self.model.provider,
                                                                 "ls_model_name": self.model.model})
        (run,) = await manager.on_chat_model_start(
            {"name": f"{self.model.provider}:{self.model.model}"}, [list(prompt)],
            invocation_params={"provider": self.model.provider, "model": self.model.model},
            name=f"{self.model.provider}:{self.model.model}")
        message_id = f"run-{run.run_id}"
        final = None
        try:
            async for chunk in self.model.stream(prompt, tools=self.specs):
                if chunk.kind == "text":
                    write({"event": "token", "text": chunk.text})
                    await run.on_llm_new_token(chunk.text, chunk=ChatGenerationChunk(
                        message=AIMessageChunk(content=chunk.text, id=message_id)))
                elif chunk.kind == "done":
                    final = chunk.reply
        except BaseException as exc:
            await run.on_llm_error(exc)
            raise
        assert final is not None, "a stream always ends with a done chunk"
        final.message.id = message_id
        await run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=final.message)]]))
        return final

    def route_after_model(self, state: ReactState) -> str:
        if state.get("halt"):
            return "halt"
        last = (state.get("messages") or [None])[-1]
        if isinstance(last, AIMessage) and (last.tool_calls or last.invalid_tool_calls):
            return "tools"
        return self.done_route

    # --- tools -----------------------------------------------------------------------------------
    async def tools_node(self, state: ReactState, config: RunnableConfig) -> dict[str, Any]:
        thread_id = thread_id_of(config)
        await self._source_tools(thread_id)  # (a resumed run may start here)
        last: AIMessage = state["messages"][-1]
        calls = list(last.tool_calls)
        if self.stop is not None and self.stop.is_set(thread_id):
            return {"halt": {"kind": "emergency_stop", "reason": "emergency stop requested", "resume_to": "tools"}}
        spawns = sum(1 for c in calls if c["name"] == "spawn_agent")
        spawned = state.get("agents_spawned") or 0
        max_agents = (await current_guardrails(self.guardrails)).max_agents_per_thread if spawns else 0
        if spawns and spawned + spawns > max_agents:
            return {"halt": {"kind": "guardrail", "resume_to": "tools", "reason":
                             f"spawning {spawns} more agent(s) would exceed {max_agents} "
                             f"agents for this thread ({spawned} spawned)"}}
        # Questions first, before any side effect: on resume this node reruns from the top.
        answers = {c["id"]: interrupt({"type": "question", "question": c["args"].get("question", ""),
                                       "tool_call_id": c["id"]})
                   for c in calls if c["name"] == "ask_human" and "ask_human" in self.by_name}
        write = _writer()
        messages: list[ToolMessage] = [
            ToolMessage(json.dumps({"error": f"invalid tool call: {bad.get('error')}"}), tool_call_id=bad["id"],
                        name=bad.get("name") or "unknown", status="error") for bad in last.invalid_tool_calls]
        update: dict[str, Any] = {"tasks": {}, "artifacts": []}
        halt = None
        for index, call in enumerate(calls):
            name, call_id = call["name"], call["id"]
            if name == "ask_human" and call_id in answers:
                messages.append(ToolMessage(json.dumps({"answer": answers[call_id]}), tool_call_id=call_id, name=name))
                continue
            if name == "finish" and "finish" in self.by_name:
                update["result"] = {"status": call["args"].get("status", "succeeded"),
                                    "output": str(call["args"].get("output", ""))}
                messages.append(ToolMessage("finished", tool_call_id=call_id, name=name))
                continue
            tool = self.by_name.get(name)
            if tool is None:
                messages.append(ToolMessage(json.dumps({"error": f"unknown tool {name!r}"}), tool_call_id=call_id,
                                            name=name, status="error"))
                continue
            write({"event": "tool_start", "name": name, "args": call["args"], "tool_call_id": call_id})
            ctx = ToolContext(thread_id=thread_id, workspace=self.workspace, policy=self.policy, call_id=call_id)
            try:
                with tracing.span(f"tool_call {name}", **{"tool.name": name, "tool.call_id": call_id,
                                                          "workspace.id": getattr(self.workspace, "workspace_id", None)}
                                  ) as span:
                    outcome = await race_stop(invoke_tool(tool, call["args"], ctx), self.stop, thread_id)
                    if span is not None:
                        span.set_attribute("tool.is_error", outcome.is_error)
            except EmergencyStopped:
                for rest in calls[index:]:
                    messages.append(ToolMessage(json.dumps({"error": "cancelled by emergency stop"}),
                                                tool_call_id=rest["id"], name=rest["name"], status="error"))
                halt = {"kind": "emergency_stop", "reason": f"emergency stop during tool {name}", "resume_to": "model"}
                break
            messages.append(ToolMessage(outcome.content, tool_call_id=call_id, name=name,
                                        status="error" if outcome.is_error else "success"))
            write({"event": "tool_end", "name": name, "tool_call_id": call_id, "is_error": outcome.is_error,
                   "content": outcome.content[:2000]})
            if outcome.event:
                write(outcome.event)
            update["tasks"].update(outcome.state_update.get("tasks", {}))
            spawned += outcome.state_update.get("agents_spawned", 0)
            if name == "write_file" and not outcome.is_error:
                update["artifacts"].append(call["args"].get("path"))
        return {**update, "messages": messages, "agents_spawned": spawned, "halt": halt}

    def route_after_tools(self, state: ReactState) -> str:
        if state.get("halt"):
            return "halt"
        if state.get("result") is not None:
            return "__end__"
        return "model"

    # --- halt: ask the human ----------------------------------------------------------------------------
    async def halt_node(self, state: ReactState, config: RunnableConfig) -> Command:
        halt = state.get("halt") or {}
        thread_id = thread_id_of(config)
        _writer()({"event": "halted", "kind": halt.get("kind"), "reason": halt.get("reason")})
        answer = interrupt({"type": halt.get("kind"), "reason": halt.get("reason"), "thread_id": thread_id,
                            **({"spent": halt["spent"]} if "spent" in halt else {}),
                            "options": ["continue", "stop"]})
        if self.stop is not None:
            self.stop.clear(thread_id)
        action, note = _parse_resume(answer)
        if action == "stop":
            messages: list[AnyMessage] = _cancel_pending(state.get("messages") or [], "stopped by the human")
            messages.append(AIMessage(f"Stopped ({halt.get('kind')}: {halt.get('reason')})."))
            update = {"messages": messages, "halt": None, "stopped": True}
            if "finish" in self.by_name:
                update["result"] = {"status": "cancelled", "output": "", "error": f"stopped: {halt.get('reason')}"}
            return Command(goto=self.stop_route, update=update)
        update = {**fresh_budget(), "stopped": False, "run_first_step": current_step(config)}
        if halt.get("kind") == "budget":  # the same budget again, counted from what is spent now
            update["budget_from"] = add_spent(state.get("spent"), None)
        goto = halt.get("resume_to", "model")
        if note:
            update["messages"] = [*_cancel_pending(state.get("messages") or [], "skipped: the human gave new input"),
                                  HumanMessage(note)]
            goto = "model"
        return Command(goto=goto, update=update)


def priced_as(model: ChatModel) -> str:
    """``provider:model`` as the price table names it (the scripted model under ``scripted``)."""
    return getattr(model, "priced_as", None) or f"{model.provider}:{model.model}"


def _parse_resume(answer: Any) -> tuple[str, str | None]:
    if isinstance(answer, dict):
        action = str(answer.get("action", "continue")).lower()
        return ("stop" if action == "stop" else "continue"), answer.get("message")
    text = str(answer or "").strip()
    if text.lower() in ("", "continue", "yes", "ok", "go on"):
        return "continue", None
    if text.lower() in ("stop", "no", "abort", "cancel"):
        return "stop", None
    return "continue", text


def close_pending_tool_calls(messages: Sequence[AnyMessage]) -> list[ToolMessage]:
    """For a run that starts while the last assistant turn still has unanswered tool calls
    (new input arrived at a halt): answer them as skipped, since providers reject a history
    with tool calls left open."""
    return _cancel_pending(messages, "skipped: new input arrived before this tool ran")


def _cancel_pending(messages: Sequence[AnyMessage], reason: str) -> list[ToolMessage]:
    """Tool results for calls of the last assistant turn that have none, so history stays valid."""
    last_ai = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if last_ai is None or not last_ai.tool_calls:
        return []
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [ToolMessage(json.dumps({"error": reason}), tool_call_id=c["id"], name=c["name"], status="error")
            for c in last_ai.tool_calls if c["id"] not in answered]


def last_text(messages: Sequence[AnyMessage]) -> str:
    last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    return message_text(last) if last is not None else ""
