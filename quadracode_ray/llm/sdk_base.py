"""What the SDK adapters share: request validation first, retries, timing and token metrics."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage

from quadracode_ray.llm.base import ModelReply, StreamChunk, ToolSpec
from quadracode_ray.llm.errors import (
    LLMError,
    ProviderError,
    StreamInterruptedError,
    UnsupportedInputError,
)
from quadracode_ray.llm.retry import RetryPolicy, call_with_retries
from quadracode_ray.llm.usage import record_request, record_retry, record_usage

T = TypeVar("T")


class SDKChatModel(ABC):
    provider: str = "?"

    def __init__(self, model: str, *, retry: RetryPolicy, max_tokens: int, metrics_provider: str | None = None):
        self.model = model
        self.retry = retry
        self.max_tokens = max_tokens
        # "scripted" models ride on an SDK adapter but are counted under their own name.
        self._metrics_provider = metrics_provider or self.provider

    @property
    def priced_as(self) -> str:
        """``provider:model`` as a price table names it (scripted models under ``scripted``)."""
        return f"{self._metrics_provider}:{self.model}"

    # --- provider specifics --------------------------------------------------------------
    @abstractmethod
    def _build_request(self, messages: Sequence[BaseMessage], tools: Sequence[ToolSpec],
                       max_tokens: int) -> dict[str, Any]:
        """SDK keyword arguments; raises UnsupportedInputError before anything is sent."""

    @abstractmethod
    async def _complete(self, request: dict[str, Any]) -> ModelReply: ...

    @abstractmethod
    async def _open_stream(self, request: dict[str, Any]) -> Any: ...

    @abstractmethod
    def _iter_stream(self, stream: Any) -> AsyncIterator[StreamChunk]: ...

    @abstractmethod
    def _translate_error(self, exc: Exception) -> ProviderError | None:
        """The typed error for an SDK exception, or None when it is not an SDK error."""

    @abstractmethod
    async def aclose(self) -> None: ...

    # --- shared behaviour -------------------------------------------------------------------
    async def _translated(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return await make()
        except LLMError:
            raise
        except Exception as exc:
            typed = self._translate_error(exc)
            if typed is None:
                raise
            raise typed from exc

    def _on_retry(self, exc: ProviderError, attempt: int, delay: float) -> None:
        record_retry(self._metrics_provider, self.model, type(exc).__name__)

    def _request(self, messages: Sequence[BaseMessage], tools: Sequence[ToolSpec],
                 max_tokens: int | None) -> dict[str, Any]:
        for tool in tools:
            if not isinstance(tool, ToolSpec):
                raise UnsupportedInputError(f"tools must be ToolSpec instances (got {type(tool).__name__})")
        if max_tokens is not None and max_tokens < 1:
            raise UnsupportedInputError(f"max_tokens must be positive (got {max_tokens})")
        return self._build_request(messages, tools, max_tokens or self.max_tokens)

    async def generate(self, messages: Sequence[BaseMessage], *, tools: Sequence[ToolSpec] = (),
                       max_tokens: int | None = None) -> ModelReply:
        request = self._request(messages, tools, max_tokens)
        started = time.perf_counter()
        try:
            reply = await call_with_retries(lambda: self._translated(lambda: self._complete(request)),
                                            self.retry, on_retry=self._on_retry)
        except LLMError as exc:
            record_request(self._metrics_provider, self.model, type(exc).__name__, time.perf_counter() - started)
            raise
        record_request(self._metrics_provider, self.model, "ok", time.perf_counter() - started)
        record_usage(self._metrics_provider, self.model, reply.usage)
        return reply

    async def stream(self, messages: Sequence[BaseMessage], *, tools: Sequence[ToolSpec] = (),
                     max_tokens: int | None = None) -> AsyncIterator[StreamChunk]:
        request = self._request(messages, tools, max_tokens)
        started = time.perf_counter()
        try:
            # Only opening the stream is retried: once output flowed a retry would repeat it.
            stream = await call_with_retries(lambda: self._translated(lambda: self._open_stream(request)),
                                             self.retry, on_retry=self._on_retry)
        except LLMError as exc:
            record_request(self._metrics_provider, self.model, type(exc).__name__, time.perf_counter() - started)
            raise
        try:
            async for chunk in self._iter_stream(stream):
                if chunk.kind == "done" and chunk.reply is not None:
                    record_request(self._metrics_provider, self.model, "ok", time.perf_counter() - started)
                    record_usage(self._metrics_provider, self.model, chunk.reply.usage)
                yield chunk
        except LLMError:
            raise
        except Exception as exc:
            # Whatever broke the stream (an SDK error event, a dropped connection surfacing as
            # the HTTP library's own error), the caller gets one typed error.
            typed = self._translate_error(exc)
            record_request(self._metrics_provider, self.model, "StreamInterruptedError", time.perf_counter() - started)
            raise StreamInterruptedError(f"stream broke after output started: {typed or exc}",
                                         provider=self.provider,
                                         status_code=typed.status_code if typed else None) from exc
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                await close()
