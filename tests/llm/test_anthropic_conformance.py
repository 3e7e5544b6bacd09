"""The provider conformance suite on the Anthropic adapter, over HTTP to the scripted server."""

from __future__ import annotations

import pytest

from quadracode_ray.llm.anthropic_provider import AnthropicChatModel
from quadracode_ray.llm.testing.conformance import (
    FAST_RETRY,
    ChatModelConformance,
    ConformanceTarget,
)


class TestAnthropicAdapter(ChatModelConformance):
    @pytest.fixture
    def conformance_target(self, scripted_server) -> ConformanceTarget:
        def make(name: str, *, retry=FAST_RETRY, timeout_s: float = 10.0) -> AnthropicChatModel:
            return AnthropicChatModel(name, api_key="test", base_url=scripted_server.url,
                                      retry=retry, timeout_s=timeout_s)

        return ConformanceTarget(server=scripted_server, make=make, metrics_provider="anthropic")
