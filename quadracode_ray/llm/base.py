"""The one interface every LLM provider adapter implements.

Messages are LangChain core messages (``SystemMessage``, ``HumanMessage``, ``AIMessage`` with
``tool_calls``, ``ToolMessage``): they are what LangGraph's ``add_messages`` reducer keeps in
graph state and what its checkpointers serialise, so graphs pass their state straight in.
The reply is an ``AIMessage`` (text content, ``tool_calls``, ``usage_metadata``) plus usage.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolSpec(BaseModel):
    """A tool the model may call: name, description and a JSON-schema object for arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _TOOL_NAME.fullmatch(value):
            raise ValueError(f"tool name must match {_TOOL_NAME.pattern} (got {value!r})")
        return value

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError("tool parameters must be a JSON schema with type 'object'")
        return value


class TokenUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ModelReply(BaseModel):
    """One assistant turn: the message (text and tool calls) and what it cost."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    message: AIMessage
    usage: TokenUsage
    stop_reason: str | None = None

    @property
    def text(self) -> str:
        return message_text(self.message)


class StreamChunk(BaseModel):
    """A piece of a streamed reply. ``text`` chunks carry deltas; the last chunk is ``done``
    and carries the complete reply, so consumers never reassemble tool calls themselves."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    kind: Literal["text", "tool_call", "done"]
    text: str = ""
    tool_call: dict[str, Any] | None = None
    reply: ModelReply | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A chat model behind one provider. Adapters: ``OpenAIChatModel``, ``AnthropicChatModel``."""

    provider: str
    model: str

    async def generate(self, messages: Sequence[BaseMessage], *, tools: Sequence[ToolSpec] = (),
                       max_tokens: int | None = None) -> ModelReply: ...

    def stream(self, messages: Sequence[BaseMessage], *, tools: Sequence[ToolSpec] = (),
               max_tokens: int | None = None) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...


def message_text(message: BaseMessage, *, strict: bool = False) -> str:
    """The plain text of a message whose content is a string or a list of text blocks.

    With ``strict``, any other block (image, audio, ...) raises UnsupportedInputError instead
    of being skipped: adapters must not silently drop what the user sent.
    """
    from quadracode_ray.llm.errors import UnsupportedInputError

    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") in ("tool_use", "tool_call"):
            continue  # carried separately as message.tool_calls
        elif strict:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise UnsupportedInputError(f"content block of type {kind!r} is not supported (text only)")
    return "".join(parts)
