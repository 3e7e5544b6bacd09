"""LLM providers behind one small interface (``ChatModel``), and the scripted offline model.

Graphs call ``ChatModel.generate``/``stream`` from their own nodes (no LangChain chat-model
wrapper): messages are LangChain core messages, so they live in LangGraph state unchanged.
"""

from quadracode_ray.llm.anthropic_provider import AnthropicChatModel
from quadracode_ray.llm.base import (
    ChatModel,
    ModelReply,
    StreamChunk,
    TokenUsage,
    ToolSpec,
    message_text,
)
from quadracode_ray.llm.errors import (
    LLMError,
    MissingCredentialsError,
    ModelSpecError,
    ProviderError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    StreamInterruptedError,
    UnsupportedInputError,
)
from quadracode_ray.llm.factory import (
    make_chat_model,
    model_notice,
    parse_model_spec,
    shared_chat_model,
)
from quadracode_ray.llm.openai_provider import OpenAIChatModel
from quadracode_ray.llm.retry import RetryPolicy

__all__ = [
    "AnthropicChatModel", "ChatModel", "LLMError", "MissingCredentialsError", "ModelReply", "ModelSpecError",
    "OpenAIChatModel", "ProviderError", "ProviderRejectedError", "ProviderTimeoutError",
    "ProviderUnavailableError", "RateLimitedError", "RetryPolicy", "StreamChunk", "StreamInterruptedError",
    "TokenUsage", "ToolSpec", "UnsupportedInputError", "make_chat_model", "message_text", "model_notice",
    "parse_model_spec", "shared_chat_model",
]
