"""The one conformance suite every ChatModel adapter runs, against the scripted server over HTTP.

Use it by subclassing ``ChatModelConformance`` in a test module and providing a fixture
``conformance_target`` that returns a ``ConformanceTarget``: a scripted server (for fault
injection) and a function that builds the adapter under test for a model name pointed at it.
Each test uses its own model name, so injected faults never leak between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import prometheus_client
import pytest
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

from quadracode_ray.llm.base import ChatModel, ToolSpec
from quadracode_ray.llm.errors import (
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamInterruptedError,
    UnsupportedInputError,
)
from quadracode_ray.llm.retry import RetryPolicy
from quadracode_ray.llm.scripted.server import ScriptedServer

FAST_RETRY = RetryPolicy(max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.05)

TOOLS = [
    ToolSpec(name="write_file", description="Write a file.", parameters={
        "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"]}),
    ToolSpec(name="exec", description="Run a shell command.", parameters={
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
]


@dataclass
class ConformanceTarget:
    server: ScriptedServer
    make: Callable[..., ChatModel]
    """make(model_name, *, retry=FAST_RETRY, timeout_s=10.0) -> the adapter under test."""
    metrics_provider: str


def _metric(name: str, labels: dict[str, str]) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


class ChatModelConformance:
    @pytest.fixture
    def model_name(self) -> str:
        return f"conf-{uuid.uuid4().hex[:8]}"

    async def test_text_reply_with_usage(self, conformance_target: ConformanceTarget, model_name: str):
        model = conformance_target.make(model_name)
        reply = await model.generate([SystemMessage("Be brief."), HumanMessage("remember the code name FALCON")])
        assert "FALCON" in reply.text
        assert reply.message.tool_calls == []
        assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
        assert reply.message.usage_metadata["total_tokens"] == reply.usage.total_tokens
        await model.aclose()

    async def test_tool_call_round_trip(self, conformance_target: ConformanceTarget, model_name: str):
        model = conformance_target.make(model_name)
        history = [HumanMessage("write hello.py that prints 42 and run it")]
        first = await model.generate(history, tools=TOOLS)
        assert [c["name"] for c in first.message.tool_calls] == ["write_file"]
        assert first.message.tool_calls[0]["args"] == {"path": "hello.py", "content": "print(42)\n"}
        history += [first.message, ToolMessage('{"path": "hello.py", "size": 10}',
                                               tool_call_id=first.message.tool_calls[0]["id"])]
        second = await model.generate(history, tools=TOOLS)
        assert second.message.tool_calls[0]["name"] == "exec"
        assert second.message.tool_calls[0]["args"] == {"command": "python3 hello.py"}
        history += [second.message, ToolMessage('{"exit_code": 0, "stdout": "42\\n", "stderr": ""}',
                                                tool_call_id=second.message.tool_calls[0]["id"])]
        final = await model.generate(history, tools=TOOLS)
        assert final.message.tool_calls == [] and final.text == "42"
        await model.aclose()

    async def test_stream_text_matches_final_reply(self, conformance_target: ConformanceTarget, model_name: str):
        model = conformance_target.make(model_name)
        prompt = "please echo this rather long sentence so that it arrives in several chunks"
        chunks = [c async for c in model.stream([HumanMessage(prompt)])]
        texts = [c.text for c in chunks if c.kind == "text"]
        assert len(texts) > 1
        assert chunks[-1].kind == "done" and chunks[-1].reply is not None
        assert "".join(texts) == chunks[-1].reply.text and prompt in chunks[-1].reply.text
        assert chunks[-1].reply.usage.output_tokens > 0
        await model.aclose()

    async def test_stream_tool_calls(self, conformance_target: ConformanceTarget, model_name: str):
        model = conformance_target.make(model_name)
        chunks = [c async for c in model.stream([HumanMessage("run `echo hi`")], tools=TOOLS)]
        calls = [c.tool_call for c in chunks if c.kind == "tool_call"]
        assert [(c["name"], c["args"]) for c in calls] == [("exec", {"command": "echo hi"})]
        assert chunks[-1].reply.message.tool_calls == calls
        await model.aclose()

    async def test_token_usage_is_recorded_as_metrics(self, conformance_target: ConformanceTarget, model_name: str):
        model = conformance_target.make(model_name)
        labels = {"provider": conformance_target.metrics_provider, "model": model_name}
        reply = await model.generate([HumanMessage("hello")])
        assert _metric("quadracode_llm_tokens_total", {**labels, "direction": "input"}) == reply.usage.input_tokens
        assert _metric("quadracode_llm_tokens_total", {**labels, "direction": "output"}) == reply.usage.output_tokens
        assert _metric("quadracode_llm_requests_total", {**labels, "outcome": "ok"}) == 1
        await model.aclose()

    async def test_unsupported_input_raises_before_sending(self, conformance_target: ConformanceTarget,
                                                           model_name: str):
        model = conformance_target.make(model_name)
        image = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}])
        with pytest.raises(UnsupportedInputError, match="image_url"):
            await model.generate([image])
        with pytest.raises(UnsupportedInputError):
            await model.generate([])
        with pytest.raises(UnsupportedInputError, match="ToolSpec"):
            await model.generate([HumanMessage("hi")], tools=[{"name": "exec"}])
        with pytest.raises(UnsupportedInputError):
            [c async for c in model.stream([HumanMessage("hi")], max_tokens=0)]
        assert conformance_target.server.faults.requests[model_name] == 0
        await model.aclose()

    async def test_retries_rate_limits_and_server_errors(self, conformance_target: ConformanceTarget,
                                                         model_name: str):
        server = conformance_target.server
        server.inject_faults(model_name, [429, 500], retry_after_s=0.01)
        model = conformance_target.make(model_name)
        reply = await model.generate([HumanMessage("hello")])
        assert "hello" in reply.text
        assert server.faults.requests[model_name] == 3
        labels = {"provider": conformance_target.metrics_provider, "model": model_name}
        assert _metric("quadracode_llm_retries_total", {**labels, "reason": "RateLimitedError"}) == 1
        assert _metric("quadracode_llm_retries_total", {**labels, "reason": "ProviderUnavailableError"}) == 1
        await model.aclose()

    async def test_stream_retries_before_output(self, conformance_target: ConformanceTarget, model_name: str):
        conformance_target.server.inject_faults(model_name, [503])
        model = conformance_target.make(model_name)
        chunks = [c async for c in model.stream([HumanMessage("hello")])]
        assert "hello" in chunks[-1].reply.text
        assert conformance_target.server.faults.requests[model_name] == 2
        await model.aclose()

    async def test_a_stream_broken_after_output_raises_a_typed_error(self, conformance_target: ConformanceTarget,
                                                                      model_name: str):
        conformance_target.server.inject_stream_break(model_name)
        model = conformance_target.make(model_name)
        with pytest.raises(StreamInterruptedError, match="after output started"):
            [c async for c in model.stream([HumanMessage("a long enough message to need several chunks")])]
        assert conformance_target.server.faults.requests[model_name] == 1  # never retried: output had begun
        await model.aclose()

    async def test_gives_up_after_max_retries(self, conformance_target: ConformanceTarget, model_name: str):
        conformance_target.server.inject_faults(model_name, [500, 502, 503, 500])
        model = conformance_target.make(model_name)
        with pytest.raises(ProviderUnavailableError) as info:
            await model.generate([HumanMessage("hello")])
        assert info.value.status_code == 503
        assert conformance_target.server.faults.requests[model_name] == 3  # one try + two retries
        await model.aclose()

    async def test_client_errors_are_not_retried(self, conformance_target: ConformanceTarget, model_name: str):
        conformance_target.server.inject_faults(model_name, [400])
        model = conformance_target.make(model_name)
        with pytest.raises(ProviderRejectedError) as info:
            await model.generate([HumanMessage("hello")])
        assert info.value.status_code == 400 and not info.value.retryable
        assert conformance_target.server.faults.requests[model_name] == 1
        await model.aclose()

    async def test_timeout_is_typed_and_retried(self, conformance_target: ConformanceTarget, model_name: str):
        # Generous margins: a normal reply must fit in the timeout even on a loaded machine.
        conformance_target.server.inject_stall(model_name, 30.0, count=1)
        model = conformance_target.make(model_name, timeout_s=1.5)
        reply = await model.generate([HumanMessage("hello")])  # first try times out, the retry answers
        assert "hello" in reply.text
        conformance_target.server.inject_stall(model_name, 30.0, count=1)
        impatient = conformance_target.make(model_name, timeout_s=1.5, retry=RetryPolicy(max_retries=0))
        with pytest.raises(ProviderTimeoutError):
            await impatient.generate([HumanMessage("hello")])
        await model.aclose()
        await impatient.aclose()
