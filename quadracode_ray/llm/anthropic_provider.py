"""Anthropic messages through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from quadracode_ray.llm.base import ModelReply, StreamChunk, TokenUsage, ToolSpec, message_text
from quadracode_ray.llm.errors import (
    ProviderError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    UnsupportedInputError,
)
from quadracode_ray.llm.retry import RetryPolicy, retry_after_seconds
from quadracode_ray.llm.sdk_base import SDKChatModel


def to_anthropic_messages(messages: Sequence[BaseMessage]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, messages). Consecutive turns of one role are merged, as the API requires
    strict user/assistant alternation; tool results travel in user turns."""
    system_parts: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        text = message_text(message, strict=True)
        if isinstance(message, SystemMessage):
            system_parts.append(text)
        elif isinstance(message, HumanMessage):
            add("user", [{"type": "text", "text": text or "(empty)"}])
        elif isinstance(message, AIMessage):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            blocks += [{"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["args"]}
                       for call in message.tool_calls]
            add("assistant", blocks or [{"type": "text", "text": "(empty)"}])
        elif isinstance(message, ToolMessage):
            add("user", [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": text,
                          "is_error": message.status == "error"}])
        else:
            raise UnsupportedInputError(f"message type {type(message).__name__} is not supported")
    if not turns:
        raise UnsupportedInputError("at least one user or assistant message is required")
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "(conversation start)"}]})
    return ("\n\n".join(system_parts) or None), turns


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


def _reply(text: str, calls: list[dict[str, Any]], usage: TokenUsage, stop: str | None) -> ModelReply:
    message = AIMessage(content=text, tool_calls=calls, usage_metadata={
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens})
    return ModelReply(message=message, usage=usage, stop_reason=stop)


class AnthropicChatModel(SDKChatModel):
    provider = "anthropic"

    def __init__(self, model: str, *, api_key: str, base_url: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, max_tokens: int = 4096,
                 metrics_provider: str | None = None, default_headers: dict[str, str] | None = None):
        super().__init__(model, retry=retry or RetryPolicy(), max_tokens=max_tokens,
                         metrics_provider=metrics_provider)
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                               max_retries=0, default_headers=default_headers)

    def _build_request(self, messages, tools, max_tokens):
        system, turns = to_anthropic_messages(messages)
        request: dict[str, Any] = {"model": self.model, "messages": turns, "max_tokens": max_tokens}
        if system:
            request["system"] = system
        if tools:
            request["tools"] = to_anthropic_tools(tools)
        return request

    async def _complete(self, request):
        response = await self.client.messages.create(**request)
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = [{"id": b.id, "name": b.name, "args": dict(b.input or {}), "type": "tool_call"}
                 for b in response.content if b.type == "tool_use"]
        usage = TokenUsage(input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens)
        return _reply(text, calls, usage, response.stop_reason)

    async def _open_stream(self, request):
        return await self.client.messages.create(**request, stream=True)

    async def _iter_stream(self, stream) -> AsyncIterator[StreamChunk]:
        text_parts: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        usage, stop = TokenUsage(), None
        async for event in stream:
            if event.type == "message_start":
                usage = TokenUsage(input_tokens=event.message.usage.input_tokens,
                                   output_tokens=event.message.usage.output_tokens)
            elif event.type == "content_block_start":
                block = event.content_block
                if block.type == "tool_use":
                    blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
            elif event.type == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    text_parts.append(delta.text)
                    yield StreamChunk(kind="text", text=delta.text)
                elif delta.type == "input_json_delta" and event.index in blocks:
                    blocks[event.index]["json"] += delta.partial_json
            elif event.type == "message_delta":
                usage = TokenUsage(input_tokens=usage.input_tokens, output_tokens=event.usage.output_tokens)
                stop = event.delta.stop_reason
        calls = []
        for index in sorted(blocks):
            raw = blocks[index]
            try:
                args = json.loads(raw["json"] or "{}")
            except ValueError as exc:
                raise ProviderUnavailableError(f"tool input is not JSON: {exc}", provider=self.provider) from exc
            call = {"id": raw["id"], "name": raw["name"], "args": args, "type": "tool_call"}
            calls.append(call)
            yield StreamChunk(kind="tool_call", tool_call=call)
        yield StreamChunk(kind="done", reply=_reply("".join(text_parts), calls, usage, stop))

    def _translate_error(self, exc: Exception) -> ProviderError | None:
        provider = self.provider
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeoutError("request timed out", provider=provider)
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderUnavailableError(f"connection failed: {exc}", provider=provider)
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            retry_after = retry_after_seconds(getattr(exc.response, "headers", None))
            message = f"HTTP {status}: {exc.message}"
            if status == 429:
                return RateLimitedError(message, provider=provider, status_code=status, retry_after_s=retry_after)
            if status == 408:
                return ProviderTimeoutError(message, provider=provider, status_code=status)
            if status >= 500:  # 529 "overloaded" included
                return ProviderUnavailableError(message, provider=provider, status_code=status,
                                                retry_after_s=retry_after)
            return ProviderRejectedError(message, provider=provider, status_code=status)
        if isinstance(exc, anthropic.APIError):
            return ProviderUnavailableError(str(exc), provider=provider)
        return None

    async def aclose(self) -> None:
        await self.client.close()
