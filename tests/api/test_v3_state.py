"""State payloads of v3 ``values`` / ``updates`` events in the protocol's shape (pure logic),
checked against the official server's own normaliser (langgraph-api, the oracle's package) on
the same serialized LangChain messages."""

from __future__ import annotations

import orjson
import pytest
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph_api.event_streaming.state_normalizers import (
    normalize_event_streaming_state_payload as official,
)

from serve_app.runs.v3_session import V3Session
from serve_app.runs.v3_state import state_payload


def _dumped(*messages) -> list[dict]:
    return [message.model_dump() for message in messages]


CASES = {
    "plain text stays a string": {"messages": _dumped(HumanMessage("hi", id="h1"), AIMessage("yo", id="a1"))},
    "list content as blocks": {"messages": _dumped(HumanMessage(id="h2", content=[
        "look", {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "image_url", "image_url": "https://x/z.png"},
        {"type": "input_audio", "input_audio": {"data": "AAA", "mime_type": "audio/wav"}},
        {"type": "thinking", "thinking": "hmm"}, {"no": "type"}, {"type": "text", "text": "ok"}]))},
    "tool calls, valid and not": {"messages": _dumped(AIMessage(
        "", id="a2", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}],
        invalid_tool_calls=[{"name": "bad", "args": "{oops", "id": "c2", "error": None}],
        response_metadata={"model_name": "m"}, additional_kwargs={"refusal": None}))},
    "OpenAI-shaped tool calls": {"messages": [{"type": "assistant", "content": "", "id": "a3", "additional_kwargs": {
        "tool_calls": [{"id": "c3", "function": {"name": "f", "arguments": '{"a": 1}'}},
                       {"id": "c4", "function": {"name": "g", "arguments": "{broken"}},
                       {"id": "c5", "function": {"arguments": "{}"}},
                       {"id": "c6", "function": {"name": "h", "arguments": ""}}]}}]},
    "tool, system, remove": {"messages": _dumped(
        ToolMessage("42", tool_call_id="c1", id="t1", status="error", artifact={"raw": 42}, name="search"),
        SystemMessage("be brief", id="s1"), RemoveMessage(id="h1"))},
    "audio output": {"messages": [{"type": "ai", "content": "said", "id": "a4", "additional_kwargs": {
        "audio": {"id": "au1", "data": "QUJD", "format": "MP3", "transcript": "said"}}},
        {"type": "ai", "content": [], "id": "a5", "additional_kwargs": {"audio": {"url": "https://x/a"}}}]},
    "nested, interrupts dropped": {"items": [1, {"__interrupt__": [], "messages": [{"type": "user", "content": "u"}]}],
                                   "__interrupt__": [{"id": "i1"}], "sub": {"messages": "not a list"}},
    "an update": {"node": "agent", "values": {"messages": _dumped(AIMessage("done", id="a6", name="bot",
                                                                         example=False))}},
}


@pytest.mark.parametrize("payload", CASES.values(), ids=CASES.keys())
def test_state_payloads_are_shaped_as_the_official_server_shapes_them(payload) -> None:
    assert state_payload(payload) == official(payload)


def test_a_message_keeps_only_the_protocol_fields() -> None:
    (shaped,) = state_payload({"messages": _dumped(AIMessage(
        [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}], id="a1",
        tool_calls=[{"name": "f", "args": {}, "id": "c1"}], usage_metadata={
            "input_tokens": 1, "output_tokens": 1, "total_tokens": 2}))})["messages"]
    assert shaped == {"type": "ai", "id": "a1",
                      "content": [{"type": "text", "text": "hi"}, {"type": "image", "url": "u"}],
                      "tool_calls": [{"type": "tool_call", "name": "f", "args": {}, "id": "c1"}]}


def test_v3_values_events_carry_the_shaped_messages() -> None:
    session = V3Session()
    session.start_run("r1", "chat")
    data = {"messages": _dumped(HumanMessage(["hi", {"type": "image_url", "image_url": "u"}], id="h1"))}
    (event,) = session.ingest("values", orjson.dumps(data), "r1:0")
    assert event["params"]["data"] == {"messages": [
        {"type": "human", "id": "h1", "content": [{"type": "text", "text": "hi"}, {"type": "image", "url": "u"}]}]}
