"""OpenAI chat completions through the official ``openai`` SDK.

Also serves any OpenAI-compatible endpoint (vLLM, Ollama, LM Studio, the scripted server)
through ``base_url``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import openai
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


def _usage_metadata(usage: TokenUsage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    if not messages:
        raise UnsupportedInputError("at least one message is required")
    wire: list[dict[str, Any]] = []
    for message in messages:
        text = message_text(message, strict=True)
        if isinstance(message, SystemMessage):
            wire.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            wire.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            entry: dict[str, Any] = {"role": "assistant", "content": text or None}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {"id": call["id"], "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call["args"])}}
                    for call in message.tool_calls
                ]
            elif not text:
                entry["content"] = ""
            wire.append(entry)
        elif isinstance(message, ToolMessage):
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": text})
        else:
            raise UnsupportedInputError(f"message type {type(message).__name__} is not supported")
    return wire


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": tool.name, "description": tool.description,
                                              "parameters": tool.parameters}} for tool in tools]


def _parse_tool_call(call_id: str, name: str, arguments: str) -> tuple[dict | None, dict | None]:
    """(tool_call, None) when the arguments are a JSON object, else (None, invalid_tool_call)."""
    try:
        args = json.loads(arguments or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments are not a JSON object")
        return {"id": call_id, "name": name, "args": args, "type": "tool_call"}, None
    except ValueError as exc:
        return None, {"id": call_id, "name": name, "args": arguments, "error": str(exc), "type": "invalid_tool_call"}


def _reply(text: str, raw_calls: list[tuple[str, str, str]], usage: TokenUsage, stop: str | None) -> ModelReply:
    calls, invalid = [], []
    for call_id, name, arguments in raw_calls:
        good, bad = _parse_tool_call(call_id, name, arguments)
        (calls if good else invalid).append(good or bad)
    message = AIMessage(content=text, tool_calls=calls, invalid_tool_calls=invalid,
                        usage_metadata=_usage_metadata(usage))
    return ModelReply(message=message, usage=usage, stop_reason=stop)


class OpenAIChatModel(SDKChatModel):
    provider = "openai"

    def __init__(self, model: str, *, api_key: str, base_url: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, max_tokens: int = 4096,
                 metrics_provider: str | None = None, default_headers: dict[str, str] | None = None):
        super().__init__(model, retry=retry or RetryPolicy(), max_tokens=max_tokens,
                         metrics_provider=metrics_provider)
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                         max_retries=0, default_headers=default_headers)
        # OpenAI's own models want max_completion_tokens; compatible servers (vLLM, Ollama) know max_tokens.
        self._max_tokens_field = "max_completion_tokens" if base_url is None else "max_tokens"

    def _build_request(self, messages, tools, max_tokens):
        request: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages),
                                   self._max_tokens_field: max_tokens}
        if tools:
            request["tools"] = to_openai_tools(tools)
        return request

    async def _complete(self, request):
        response = await self.client.chat.completions.create(**request)
        if not response.choices:
            raise ProviderUnavailableError("reply without choices", provider=self.provider)
        choice = response.choices[0]
        usage = TokenUsage(input_tokens=getattr(response.usage, "prompt_tokens", 0) or 0,
                           output_tokens=getattr(response.usage, "completion_tokens", 0) or 0)
        raw = [(c.id, c.function.name, c.function.arguments) for c in (choice.message.tool_calls or [])
               if getattr(c, "function", None) is not None]
        return _reply(choice.message.content or "", raw, usage, choice.finish_reason)

    async def _open_stream(self, request):
        return await self.client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True})

    async def _iter_stream(self, stream) -> AsyncIterator[StreamChunk]:
        text_parts: list[str] = []
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        usage, stop = TokenUsage(), None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = TokenUsage(input_tokens=chunk.usage.prompt_tokens or 0,
                                   output_tokens=chunk.usage.completion_tokens or 0)
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text_parts.append(delta.content)
                    yield StreamChunk(kind="text", text=delta.content)
                for call in delta.tool_calls or []:
                    slot = calls.setdefault(call.index, ["", "", ""])
                    if call.id:
                        slot[0] = call.id
                    if call.function is not None:
                        slot[1] += call.function.name or ""
                        slot[2] += call.function.arguments or ""
                if choice.finish_reason:
                    stop = choice.finish_reason
        reply = _reply("".join(text_parts), [tuple(calls[i]) for i in sorted(calls)], usage, stop)
        for call in reply.message.tool_calls:
            yield StreamChunk(kind="tool_call", tool_call=dict(call))
        yield StreamChunk(kind="done", reply=reply)

    def _translate_error(self, exc: Exception) -> ProviderError | None:
        return translate_openai_error(exc, self.provider)

    async def aclose(self) -> None:
        await self.client.close()


def translate_openai_error(exc: Exception, provider: str) -> ProviderError | None:
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError("request timed out", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailableError(f"connection failed: {exc}", provider=provider)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = retry_after_seconds(getattr(exc.response, "headers", None))
        message = f"HTTP {status}: {exc.message}"
        if status == 429:
            return RateLimitedError(message, provider=provider, status_code=status, retry_after_s=retry_after)
        if status == 408:
            return ProviderTimeoutError(message, provider=provider, status_code=status)
        if status >= 500:
            return ProviderUnavailableError(message, provider=provider, status_code=status, retry_after_s=retry_after)
        return ProviderRejectedError(message, provider=provider, status_code=status)
    if isinstance(exc, openai.APIError):
        return ProviderUnavailableError(str(exc), provider=provider)
    return None
