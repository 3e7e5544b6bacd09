"""The OpenAI chat-completions and Anthropic messages wire formats, for the scripted server.

Requests become provider-neutral turns for the brain; a Decision becomes a response body or
the exact sequence of server-sent events each official SDK expects.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

from quadracode_ray.llm.scripted.brain import Decision


class WireError(ValueError):
    """The request is malformed; the server answers 400 with this message."""


def approx_tokens(text: str) -> int:
    """~4 characters per token: deterministic, good enough for budgets and benchmarks."""
    return math.ceil(len(text) / 4) if text else 0


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict) and block.get("type") in ("image", "image_url", "input_audio", "document"):
                raise WireError(f"content of type {block['type']!r} is not supported by the scripted model")
        return "".join(parts)
    raise WireError("content must be a string or a list of blocks")


def _prompt_text(turns: list[dict[str, Any]]) -> str:
    return "\n".join(t.get("text", "") + json.dumps(t.get("tool_calls") or "") for t in turns)


# --- OpenAI -------------------------------------------------------------------------------------
def openai_turns(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("'messages' must be a non-empty list")
    turns = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            turns.append({"role": "system", "text": _text_of(message.get("content"))})
        elif role == "user":
            turns.append({"role": "user", "text": _text_of(message.get("content"))})
        elif role == "assistant":
            calls = []
            for call in message.get("tool_calls") or []:
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except (ValueError, KeyError) as exc:
                    raise WireError(f"tool call arguments are not JSON: {exc}") from exc
                calls.append({"id": call["id"], "name": call["function"]["name"], "args": args})
            turns.append({"role": "assistant", "text": _text_of(message.get("content")), "tool_calls": calls})
        elif role == "tool":
            turns.append({"role": "tool", "tool_call_id": message.get("tool_call_id"),
                          "text": _text_of(message.get("content"))})
        else:
            raise WireError(f"unknown message role {role!r}")
    tools = {t["function"]["name"]: t["function"].get("parameters", {}) for t in body.get("tools") or []
             if t.get("type") == "function"}
    return turns, tools


def _openai_calls(decision: Decision, seed: str) -> list[dict[str, Any]]:
    return [{"id": f"call_{seed}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
            for i, c in enumerate(decision.tool_calls)]


def openai_response(decision: Decision, model: str, turns: list[dict[str, Any]], seed: str) -> dict[str, Any]:
    calls = _openai_calls(decision, seed)
    prompt, completion = approx_tokens(_prompt_text(turns)), approx_tokens(decision.text + json.dumps(calls))
    message: dict[str, Any] = {"role": "assistant", "content": decision.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{seed}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop",
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def openai_stream(decision: Decision, model: str, turns: list[dict[str, Any]], seed: str,
                  include_usage: bool) -> Iterator[str]:
    full = openai_response(decision, model, turns, seed)
    base = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                            "logprobs": None}]}) + "\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(decision.text):
        yield chunk({"content": piece})
    for index, call in enumerate(_openai_calls(decision, seed)):
        yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for piece in _pieces(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, full["choices"][0]["finish_reason"])
    if include_usage:
        yield "data: " + json.dumps({**base, "choices": [], "usage": full["usage"]}) + "\n\n"
    yield "data: [DONE]\n\n"


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# --- Anthropic ------------------------------------------------------------------------------------
def anthropic_turns(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("messages: must be a non-empty list")
    if not isinstance(body.get("max_tokens"), int):
        raise WireError("max_tokens: Field required")
    turns: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        turns.append({"role": "system", "text": _text_of(system)})
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise WireError(f"messages: unexpected role {role!r}")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        texts, calls = [], []
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use":
                calls.append({"id": block["id"], "name": block["name"], "args": block.get("input") or {}})
            elif kind == "tool_result":
                turns.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                              "text": _text_of(block.get("content"))})
            else:
                raise WireError(f"content block of type {kind!r} is not supported by the scripted model")
        if texts or calls:
            turns.append({"role": role, "text": "".join(texts), "tool_calls": calls})
    tools = {t["name"]: t.get("input_schema", {}) for t in body.get("tools") or []}
    return turns, tools


def anthropic_response(decision: Decision, model: str, turns: list[dict[str, Any]], seed: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": decision.text}] if decision.text else []
    content += [{"type": "tool_use", "id": f"toolu_{seed}_{i}", "name": c["name"], "input": c["args"]}
                for i, c in enumerate(decision.tool_calls)]
    return {
        "id": f"msg_{seed}", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": "tool_use" if decision.tool_calls else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": approx_tokens(_prompt_text(turns)),
                  "output_tokens": approx_tokens(decision.text + json.dumps(decision.tool_calls))},
    }


def anthropic_stream(decision: Decision, model: str, turns: list[dict[str, Any]], seed: str) -> Iterator[str]:
    full = anthropic_response(decision, model, turns, seed)

    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    start = {**full, "content": [], "stop_reason": None,
             "usage": {"input_tokens": full["usage"]["input_tokens"], "output_tokens": 1}}
    yield event("message_start", {"message": start})
    for index, block in enumerate(full["content"]):
        if block["type"] == "text":
            yield event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            for piece in _pieces(block["text"]):
                yield event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
        else:
            yield event("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            for piece in _pieces(json.dumps(block["input"])):
                yield event("content_block_delta", {"index": index, "delta": {
                    "type": "input_json_delta", "partial_json": piece}})
        yield event("content_block_stop", {"index": index})
    yield event("message_delta", {"delta": {"stop_reason": full["stop_reason"], "stop_sequence": None},
                                  "usage": {"output_tokens": full["usage"]["output_tokens"]}})
    yield event("message_stop", {})


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def new_seed() -> str:
    return uuid.uuid4().hex[:12]
