"""``provider:model`` specs to chat models, with defaults from Settings.

- ``anthropic:<model>``: the Anthropic SDK (needs ANTHROPIC_API_KEY).
- ``openai:<model>``: the OpenAI SDK; ``openai_base_url`` points it at any OpenAI-compatible
  endpoint (vLLM, Ollama), where a key may be unnecessary.
- ``scripted:<name>``: the scripted model, reached through the real SDK named by
  ``scripted_wire_protocol`` (or the spec ``scripted:<name>@anthropic``) at
  ``scripted_server_url``, or at a server started in-process on first use.
"""

from __future__ import annotations

import asyncio
import weakref

from quadracode_ray.config import KNOWN_PROVIDERS, Settings, load_settings
from quadracode_ray.llm.base import ChatModel
from quadracode_ray.llm.errors import MissingCredentialsError, ModelSpecError
from quadracode_ray.llm.retry import RetryPolicy

SCRIPTED_API_KEY = "scripted-no-key-needed"


def parse_model_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = (spec or "").strip().partition(":")
    if not sep or not model or provider not in KNOWN_PROVIDERS:
        raise ModelSpecError(
            f"model spec must be provider:model with provider one of {', '.join(KNOWN_PROVIDERS)} (got {spec!r})")
    return provider, model


def make_chat_model(spec: str | None = None, settings: Settings | None = None) -> ChatModel:
    """A chat model for ``spec`` (default: ``settings.default_model``). Works with zero setup for
    ``scripted:*``; raises ModelSpecError / MissingCredentialsError with a clear message."""
    settings = settings or load_settings()
    provider, model = parse_model_spec(spec or settings.default_model)
    retry = RetryPolicy(max_retries=settings.llm_max_retries)
    common = {"timeout_s": settings.llm_timeout_s, "retry": retry, "max_tokens": settings.llm_max_output_tokens}
    if provider == "anthropic":
        from quadracode_ray.llm.anthropic_provider import AnthropicChatModel

        if settings.anthropic_api_key is None:
            raise MissingCredentialsError("anthropic models need ANTHROPIC_API_KEY (or QUADRACODE_ANTHROPIC_API_KEY)")
        return AnthropicChatModel(model, api_key=settings.anthropic_api_key.get_secret_value(), **common)
    if provider == "openai":
        from quadracode_ray.llm.openai_provider import OpenAIChatModel

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if key is None and settings.openai_base_url is None:
            raise MissingCredentialsError(
                "openai models need OPENAI_API_KEY, or OPENAI_BASE_URL for a keyless compatible server")
        return OpenAIChatModel(model, api_key=key or "none", base_url=settings.openai_base_url, **common)
    return make_scripted_model(model, settings, **common)


def make_scripted_model(name: str, settings: Settings, **common) -> ChatModel:
    name, _, protocol = name.partition("@")
    protocol = protocol or settings.scripted_wire_protocol
    if protocol not in ("openai", "anthropic"):
        raise ModelSpecError(f"scripted wire protocol must be openai or anthropic (got {protocol!r})")
    url = settings.scripted_server_url
    if url is None:
        from quadracode_ray.llm.scripted.runtime import ensure_scripted_server

        url = ensure_scripted_server(settings.scripted_delay_ms / 1000)
    url = url.rstrip("/")
    if protocol == "anthropic":
        from quadracode_ray.llm.anthropic_provider import AnthropicChatModel

        return AnthropicChatModel(name, api_key=SCRIPTED_API_KEY, base_url=url, metrics_provider="scripted", **common)
    from quadracode_ray.llm.openai_provider import OpenAIChatModel

    return OpenAIChatModel(name, api_key=SCRIPTED_API_KEY, base_url=url + "/v1", metrics_provider="scripted", **common)


def model_notice(settings: Settings) -> str:
    """One line saying which model runs by default and why, for `up`, /info and the panel."""
    spec = settings.default_model
    if spec.startswith("scripted:"):
        reason = "set QUADRACODE_MODEL" if settings.model else "no ANTHROPIC_API_KEY or OPENAI_API_KEY is set"
        return (f"model {spec}: the built-in offline scripted model ({reason}); it follows plain instructions "
                "and is not an LLM")
    return f"model {spec}"


_shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_chat_model(spec: str | None = None, settings: Settings | None = None) -> ChatModel:
    """Like make_chat_model, but one instance per spec and event loop, so graphs built per run
    reuse the SDK's connection pool (SDK clients must not cross event loops)."""
    settings = settings or load_settings()
    spec = spec or settings.default_model
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop yet: nothing to share with
        return make_chat_model(spec, settings)
    models = _shared.setdefault(loop, {})
    secret = lambda value: value.get_secret_value() if value is not None else None  # noqa: E731
    key = (spec, secret(settings.anthropic_api_key), secret(settings.openai_api_key), settings.openai_base_url,
           settings.llm_timeout_s, settings.llm_max_retries, settings.llm_max_output_tokens,
           settings.scripted_server_url, settings.scripted_wire_protocol, settings.scripted_delay_ms)
    if key not in models:
        models[key] = make_chat_model(spec, settings)
    return models[key]
