"""Pure logic of the Chat tab: LangGraph messages and stream parts into Gradio chat messages.

A chat message is a plain dict ``{"role", "content", "metadata"}`` (what ``gr.Chatbot`` takes).
A tool call becomes an assistant message whose metadata has a ``title`` (so Gradio shows it as
a collapsible step) and a ``status`` (``pending`` until its result arrives, then ``done``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_TOOL_TEXT = 4000
# How the orchestrator folds an agent's delegated-task result into its thread: a human message
# named "task_result" whose text starts with "[task <task_id> <status> by agent <agent_id>]"
# (quadracode_ray.graphs.orchestrator.format_task_result). Not something the human typed.
TASK_RESULT_NAME = "task_result"
_TASK_RESULT_HEAD = re.compile(r"^\[task (?P<task>\S+) (?P<status>\S+) by agent (?P<agent>[^\]]+)\]\n?")


def text_of(content: Any) -> str:
    """A message's content as text (LangChain content may be a list of typed blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return "" if content is None else str(content)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TOOL_TEXT else text[:MAX_TOOL_TEXT] + f"\n… ({len(text) - MAX_TOOL_TEXT} more characters)"


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


def tool_step(call: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    """One tool call (and its result once known) as a collapsible step."""
    args = json.dumps(call.get("args", {}), ensure_ascii=False, indent=2)
    body = f"```json\n{args}\n```"
    status = "pending"
    title = f"tool {call.get('name', 'tool')}"
    if result is not None:
        status = "done"
        failed = result.get("status") == "error"
        body += f"\n\n{'error' if failed else '→ result'}:\n```\n{_clip(_pretty(text_of(result.get('content'))))}\n```"
        if failed:
            title += " (error)"
    return {"role": "assistant", "content": body,
            "metadata": {"title": title, "id": str(call.get("id") or ""), "status": status}}


def to_chat(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A thread's messages (as the API returns them) as chat messages."""
    results = {m.get("tool_call_id"): m for m in messages if isinstance(m, dict) and m.get("type") == "tool"}
    chat: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        kind = message.get("type")
        text = text_of(message.get("content"))
        if kind == "human" and message.get("name") == TASK_RESULT_NAME:
            chat.append(task_result_message(text))
        elif kind == "human":
            chat.append({"role": "user", "content": text})
        elif kind in ("ai", "AIMessageChunk"):
            if text:
                chat.append({"role": "assistant", "content": text})
            for call in message.get("tool_calls") or []:
                chat.append(tool_step(call, results.get(call.get("id"))))
        elif kind == "tool" and message.get("tool_call_id") not in _call_ids(messages):
            # A result folded in without a call of this thread (e.g. an agent's task result).
            chat.append({"role": "assistant", "content": _clip(text),
                         "metadata": {"title": f"result: {message.get('name') or 'result'}", "status": "done"}})
        elif kind == "system" and text:
            chat.append({"role": "assistant", "content": text, "metadata": {"title": "system", "status": "done"}})
    return chat


def task_result_message(text: str) -> dict[str, Any]:
    """An agent's delegated-task result folded into the thread, shown as the agent's (its name,
    the task and its status in the title), never as a message the human sent. No ``status`` in
    its metadata: Gradio shows such a step open (a "done" one collapsed) and without a spinner."""
    head = _TASK_RESULT_HEAD.match(text)
    if head is None:
        return {"role": "assistant", "content": _clip(text), "metadata": {"title": "agent result"}}
    title = f"agent {head['agent']} · task {head['task']} · {head['status']}"
    return {"role": "assistant", "content": _clip(text[head.end():].strip() or "(no output)"),
            "metadata": {"title": title}}


# Why a tool step that never got its result stopped, by the status its run ended in.
_UNFINISHED = {"interrupted": "cancelled", "error": "failed", "timeout": "timed out"}
LIVE_RUN_STATUSES = ("pending", "running")


def settle_steps(chat: list[dict[str, Any]], run_status: str | None) -> list[dict[str, Any]]:
    """The chat once its run ended (any status but pending/running): a tool step still pending
    will get no result, so it stops spinning and says why (cancelled, failed, ...)."""
    if run_status is None or run_status in LIVE_RUN_STATUSES:
        return chat
    why = _UNFINISHED.get(run_status, "no result")
    settled = []
    for message in chat:
        metadata = message.get("metadata") or {}
        if metadata.get("status") == "pending":
            message = {**message, "metadata": {**metadata, "status": "done", "title": f"{metadata.get('title')} ({why})"}}
        settled.append(message)
    return settled


def _call_ids(messages: list[dict[str, Any]]) -> set[str]:
    return {call.get("id") for m in messages if isinstance(m, dict)
            for call in (m.get("tool_calls") or [])}


@dataclass
class ChatStream:
    """The chat as a run streams: the last full state's messages plus tokens streamed since.

    ``values`` parts replace the base (they are the truth); ``messages`` parts (messages-tuple
    mode: ``[chunk, metadata]``) append tokens to the message with the chunk's id.
    """

    base: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    base_ids: set[str] = field(default_factory=set)
    pending_user: str | None = None

    def start(self, user_text: str | None) -> None:
        self.pending_user = user_text

    def feed(self, event: str, data: Any) -> bool:
        """Take one stream part; True when what is shown changed."""
        if event == "values" and isinstance(data, dict):
            self.set_values(data)
            return True
        if event.startswith("messages") and isinstance(data, (list, tuple)) and data:
            chunk = data[0]
            if not isinstance(chunk, dict) or chunk.get("type") not in ("AIMessageChunk", "ai"):
                return False
            message_id = str(chunk.get("id") or "")
            token = text_of(chunk.get("content"))
            if not token or message_id in self.base_ids:
                return False
            if message_id not in self.partial:
                self.partial[message_id] = ""
                self.order.append(message_id)
            if chunk.get("type") == "ai":  # a whole message, not a chunk
                self.partial[message_id] = token
            else:
                self.partial[message_id] += token
            return True
        return False

    def set_values(self, values: dict[str, Any]) -> None:
        self.values = values
        messages = values.get("messages") or []
        self.base = to_chat(messages)
        self.base_ids = {str(m.get("id")) for m in messages if isinstance(m, dict) and m.get("id")}
        if any(isinstance(m, dict) and m.get("type") == "human" and text_of(m.get("content")) == self.pending_user
               for m in messages):
            self.pending_user = None
        self.order = [i for i in self.order if i not in self.base_ids]
        self.partial = {i: self.partial[i] for i in self.order}

    def render(self) -> list[dict[str, Any]]:
        shown = list(self.base)
        if self.pending_user:
            shown.append({"role": "user", "content": self.pending_user})
        shown.extend({"role": "assistant", "content": self.partial[i]} for i in self.order if self.partial[i])
        return shown


def task_rows(values: dict[str, Any]) -> list[list[str]]:
    """The thread's delegated tasks (orchestrator state ``tasks``): id, agent, status, summary."""
    tasks = values.get("tasks") or {}
    if not isinstance(tasks, dict):
        return []
    rows = []
    for task_id, task in tasks.items():
        task = task if isinstance(task, dict) else {}
        summary = task.get("instruction") or task.get("description") or task.get("output") or ""
        rows.append([str(task_id), str(task.get("agent_id") or ""), str(task.get("status") or ""),
                     str(summary)[:120]])
    return rows


def pending_interrupts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The interrupts a thread's state is waiting on (newer servers list them at the top level,
    older ones under each task)."""
    found = list(state.get("interrupts") or [])
    if not found:
        for task in state.get("tasks") or []:
            if isinstance(task, dict):
                found.extend(task.get("interrupts") or [])
    values = []
    for item in found:
        value = item.get("value") if isinstance(item, dict) and "value" in item else item
        values.append(value if isinstance(value, dict) else {"type": "question", "question": str(value)})
    return values


def describe_interrupt(value: dict[str, Any]) -> str:
    """The interrupt card's text."""
    kind = value.get("type") or "interrupt"
    if kind == "question":
        return f"**The agent asks:** {value.get('question', '')}"
    reason = value.get("reason") or json.dumps(value, ensure_ascii=False)
    options = value.get("options")
    extra = f" (options: {', '.join(map(str, options))})" if options else ""
    return f"**Halted ({kind}):** {reason}{extra}"


def accept_value(value: dict[str, Any]) -> Any:
    """What 'Accept' resumes with: a yes to a question, 'continue' to a halt."""
    return "yes" if value.get("type") == "question" else "continue"


def respond_value(value: dict[str, Any], text: str) -> Any:
    """What 'Respond' resumes with: the answer to a question, or new input after a halt."""
    if value.get("type") == "question":
        return text
    return {"action": "continue", "message": text}


def edit_value(text: str) -> Any:
    """'Edit' resumes with the edited value: JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_lifecycle(event: str, data: Any) -> str | None:
    """What a part of a thread's join stream says of a run's life: ``"started"`` (its first
    ``metadata`` part, ``{"run_id", ...}``), ``"ended"`` (``{"status": "run_done"}``), else None."""
    if event != "metadata" or not isinstance(data, dict):
        return None
    if data.get("status") == "run_done":
        return "ended"
    return "started" if data.get("run_id") and "status" not in data else None
