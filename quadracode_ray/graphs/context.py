"""Keeping prompts within a token budget without losing anything.

- The graph state keeps every message (checkpointed); only the *prompt* is trimmed.
- Older turns are replaced by a short extractive summary (one line per message), cutting only
  at user-turn boundaries so a tool call is never separated from its result.
- Tool outputs are bounded when they are produced (``quadracode_ray.tools.output``): past
  ``tool_result_max_chars`` the full text is written to the workspace and the message keeps its
  head, tail and the file path.

Token counts are estimated at ~4 characters per token: providers tokenise differently and a
budget only needs to be safe, not exact (keep it well under the model's window).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.config import Settings
from quadracode_ray.llm.base import message_text


class ContextPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token_budget: int = Field(default=32_000, ge=200, description="Prompt size to stay under (estimated tokens).")
    tool_result_max_chars: int = Field(default=8_000, ge=200, description="Longer tool outputs are offloaded.")
    offload_dir: str = Field(default=".quadracode/outputs", description="Workspace folder for offloaded outputs.")
    summary_line_chars: int = Field(default=160, ge=20, description="Length of one line of the summary.")


def context_policy_from_settings(settings: Settings) -> ContextPolicy:
    return ContextPolicy(token_budget=settings.context_token_budget)


def estimate_tokens(message: BaseMessage) -> int:
    text = message_text(message)
    if isinstance(message, AIMessage) and message.tool_calls:
        text += json.dumps([c["args"] for c in message.tool_calls])
    return 4 + math.ceil(len(text) / 4)


def _summary_line(message: BaseMessage, width: int) -> str:
    text = " ".join(message_text(message).split())
    if isinstance(message, AIMessage) and message.tool_calls:
        text = (text + " " if text else "") + "called " + ", ".join(
            f"{c['name']}({json.dumps(c['args'])})" for c in message.tool_calls)
    role = {"human": "user", "ai": "assistant", "tool": f"tool {getattr(message, 'name', '') or ''}".strip()}.get(
        message.type, message.type)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"- {role}: {text}"


def summarise(messages: Sequence[BaseMessage], width: int, max_tokens: int) -> SystemMessage:
    """One line per message in order. When even that is too long, the human's lines are kept
    first (instructions and facts live there), then the assistant's, then tool outputs, each
    group from the most recent back."""
    lines = [_summary_line(m, width if m.type == "human" else width // 2) for m in messages]
    rank = {"human": 0, "ai": 1}
    order = sorted(range(len(lines)), key=lambda i: (rank.get(messages[i].type, 2), -i))
    kept: set[int] = set()
    used = 0
    for index in order:
        cost = math.ceil(len(lines[index]) / 4) + 1
        if used + cost <= max_tokens:
            kept.add(index)
            used += cost
    omitted = len(lines) - len(kept)
    head = f"Summary of {len(messages)} earlier messages (full history is kept in the thread)"
    head += f"; {omitted} left out" if omitted else ""
    return SystemMessage(head + ":\n" + "\n".join(lines[i] for i in sorted(kept)))


def fit_to_budget(system: Sequence[BaseMessage], messages: Sequence[BaseMessage],
                  policy: ContextPolicy) -> list[BaseMessage]:
    """The prompt: system messages, maybe a summary of older turns, then the recent turns."""
    fixed = sum(estimate_tokens(m) for m in system)
    costs = [estimate_tokens(m) for m in messages]
    if fixed + sum(costs) <= policy.token_budget:
        return [*system, *messages]
    summary_budget = max(policy.token_budget // 5, 50)
    available = policy.token_budget - fixed - summary_budget
    turn_starts = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)] or [0]
    cut = turn_starts[-1]
    for start in turn_starts:  # the earliest turn boundary whose tail fits
        if sum(costs[start:]) <= available:
            cut = start
            break
    recent = list(messages[cut:])
    if sum(costs[cut:]) > available:
        recent = _shrink_tool_results(recent, available)
    older = messages[:cut]
    prompt: list[BaseMessage] = list(system)
    if older:
        prompt.append(summarise(older, policy.summary_line_chars, summary_budget))
    return prompt + recent


def _shrink_tool_results(messages: list[BaseMessage], available_tokens: int) -> list[BaseMessage]:
    """The current turn alone is too big: cut its tool outputs evenly to make it fit."""
    tools = [m for m in messages if isinstance(m, ToolMessage)]
    if not tools:
        return messages
    others = sum(estimate_tokens(m) for m in messages if not isinstance(m, ToolMessage))
    per_tool_chars = max(200, (available_tokens - others) * 4 // len(tools))
    out: list[BaseMessage] = []
    for message in messages:
        text = message_text(message)
        if isinstance(message, ToolMessage) and len(text) > per_tool_chars:
            half = per_tool_chars // 2
            text = f"{text[:half]}\n... [{len(text) - 2 * half} characters left out of the prompt] ...\n{text[-half:]}"
            message = message.model_copy(update={"content": text})
        out.append(message)
    return out
