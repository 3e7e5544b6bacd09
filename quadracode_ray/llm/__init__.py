"""LLM providers behind one small interface (``ChatModel``), and the scripted offline model.

Graphs call ``ChatModel.generate``/``stream`` from their own nodes (no LangChain chat-model
wrapper): messages are LangChain core messages, so they live in LangGraph state unchanged.
"""

import importlib
from typing import TYPE_CHECKING

# Names resolve lazily: the SDKs take seconds to import, and the scripted server and code that
# only needs the types should not pay for them.
_EXPORTS = {
    "AnthropicChatModel": "anthropic_provider", "OpenAIChatModel": "openai_provider",
    "ChatModel": "base", "ModelReply": "base", "StreamChunk": "base", "TokenUsage": "base", "ToolSpec": "base",
    "message_text": "base", "RetryPolicy": "retry",
    "make_chat_model": "factory", "model_notice": "factory", "parse_model_spec": "factory",
    "shared_chat_model": "factory",
    **{name: "errors" for name in (
        "LLMError", "MissingCredentialsError", "ModelSpecError", "ProviderError", "ProviderRejectedError",
        "ProviderTimeoutError", "ProviderUnavailableError", "RateLimitedError", "StreamInterruptedError",
        "UnsupportedInputError")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quadracode_ray.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quadracode_ray.llm.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # for type checkers and IDEs
    from quadracode_ray.llm.anthropic_provider import AnthropicChatModel  # noqa: F401
    from quadracode_ray.llm.base import ChatModel, ModelReply, StreamChunk, TokenUsage, ToolSpec  # noqa: F401
    from quadracode_ray.llm.factory import make_chat_model, shared_chat_model  # noqa: F401
    from quadracode_ray.llm.openai_provider import OpenAIChatModel  # noqa: F401
