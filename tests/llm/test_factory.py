"""make_chat_model: specs, defaults from settings, clear errors, zero-setup scripted models."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from quadracode_ray.llm import (
    AnthropicChatModel,
    MissingCredentialsError,
    ModelSpecError,
    OpenAIChatModel,
    make_chat_model,
    model_notice,
    parse_model_spec,
)


@pytest.mark.parametrize("spec", ["", "gpt-4o", "mistral:large", "openai:", ":x"])
def test_bad_specs_raise_a_typed_error(spec):
    with pytest.raises(ModelSpecError, match="provider:model"):
        parse_model_spec(spec)


def test_spec_parsing():
    assert parse_model_spec("anthropic:claude-sonnet-4-5") == ("anthropic", "claude-sonnet-4-5")
    assert parse_model_spec("openai:llama3:8b") == ("openai", "llama3:8b")


def test_missing_keys_are_named(make_settings):
    settings = make_settings()
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        make_chat_model("anthropic:claude-sonnet-4-5", settings)
    with pytest.raises(MissingCredentialsError, match="OPENAI_API_KEY"):
        make_chat_model("openai:gpt-4o", settings)


def test_openai_compatible_base_url_needs_no_key(make_settings):
    model = make_chat_model("openai:llama3", make_settings(openai_base_url="http://127.0.0.1:11434/v1"))
    assert isinstance(model, OpenAIChatModel)
    assert str(model.client.base_url).startswith("http://127.0.0.1:11434/v1")
    # Compatible servers get max_tokens; OpenAI's own API gets max_completion_tokens.
    assert model._build_request([HumanMessage("x")], [], 10)["max_tokens"] == 10
    official = make_chat_model("openai:gpt-4o", make_settings(openai_api_key="sk-x"))
    assert official._build_request([HumanMessage("x")], [], 10)["max_completion_tokens"] == 10


def test_keys_pick_the_provider(make_settings):
    model = make_chat_model(None, make_settings(anthropic_api_key="sk-test"))
    assert isinstance(model, AnthropicChatModel) and model.model == "claude-sonnet-4-5"
    assert model.client.max_retries == 0  # our RetryPolicy retries, not the SDK


async def test_scripted_default_works_with_zero_setup(make_settings):
    settings = make_settings()
    assert settings.default_model == "scripted:default"
    model = make_chat_model(None, settings)
    reply = await model.generate([HumanMessage("remember the code name ORCA")])
    assert "ORCA" in reply.text
    await model.aclose()


async def test_scripted_over_the_anthropic_protocol_at_a_configured_server(make_settings, scripted_server):
    settings = make_settings(scripted_server_url=scripted_server.url, scripted_wire_protocol="anthropic")
    model = make_chat_model("scripted:factory-check", settings)
    assert isinstance(model, AnthropicChatModel)
    reply = await model.generate([HumanMessage("hello")])
    assert "hello" in reply.text
    assert scripted_server.faults.requests["factory-check"] == 1
    with pytest.raises(ModelSpecError):
        make_chat_model("scripted:x@grpc", settings)
    await model.aclose()


def test_model_notice_says_plainly_when_the_scripted_model_runs(make_settings):
    assert "no ANTHROPIC_API_KEY or OPENAI_API_KEY" in model_notice(make_settings())
    assert model_notice(make_settings(openai_api_key="sk-x")) == "model openai:gpt-4o"


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "files__read\n"])
def test_a_tool_name_outside_the_providers_alphabet_is_refused(name):
    from pydantic import ValidationError

    from quadracode_ray.llm.base import ToolSpec

    assert ToolSpec(name="files__read", description="d").name == "files__read"
    with pytest.raises(ValidationError, match="tool name must match"):
        ToolSpec(name=name, description="d")
