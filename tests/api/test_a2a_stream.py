"""A2A ``message/stream`` without a server: how one run's events become JSON-RPC answers.

The run's events come in whatever batches the host hands out (under load, the whole run in one
batch); the answers must not depend on it: the task, a ``working`` update per chunk of agent
text, the response artifact, the final status, as the official server sends them.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from runs.stream import END_EVENT
from serve_app import a2a_server, a2a_stream
from serve_app.runs import service

THREAD_ID, RUN_ID = str(uuid.uuid4()), str(uuid.uuid4())
REPLY = "hello there friend"


def _chat_run_events() -> list[tuple[str, Any]]:
    """What the chat graph's run streams with modes messages + values (tests/api/graphs.py)."""
    human = {"type": "human", "content": "hi", "id": "h-1"}
    events: list[tuple[str, Any]] = [("values", {"messages": [human]}),
                                     ("messages/metadata", {"ai-1": {"metadata": {"langgraph_node": "chat"}}})]
    text = ""
    for token in ("hello", " ", "there", " ", "friend"):
        text += token
        events.append(("messages/partial", [{"type": "ai", "content": text, "id": "ai-1"}]))
    final = {"messages": [human, {"type": "ai", "content": REPLY, "id": "ai-1"}]}
    events += [("values", final), (END_EVENT, {"status": "success", "output": final})]
    return events


def _batches(events: list[tuple[str, Any]], sizes: list[int]) -> list[list[tuple[int, str, bytes]]]:
    numbered = [(seq, event, orjson.dumps(data)) for seq, (event, data) in enumerate(events)]
    out, start = [], 0
    for size in sizes:
        out.append(numbered[start:start + size])
        start += size
    assert start == len(numbered)
    return out


@pytest.fixture
def calls(monkeypatch) -> dict[str, Any]:
    """The stream's collaborators replaced: the task's run is created and read from these."""
    seen: dict[str, Any] = {"batches": []}

    async def resolve_assistant(context, value, owner):
        return {"assistant_id": value}

    async def start_task(context, owner, assistant, params, *, stream_mode=None, push=True):
        seen["push"], seen["stream_mode"] = push, stream_mode
        return ({"run_id": RUN_ID, "thread_id": THREAD_ID, "executor": "host"},
                {**params["message"], "contextId": THREAD_ID})

    async def run_events(context, run, after=-1, *, start=False):
        seen["start"] = start
        for items in seen["batches"]:
            yield items

    async def thread_output(context, thread_id):
        raise AssertionError("the run's end carries its output: the thread is not read back")

    monkeypatch.setattr(a2a_server, "resolve_assistant", resolve_assistant)
    monkeypatch.setattr(a2a_server, "start_task", start_task)
    monkeypatch.setattr(service, "run_events", run_events)
    monkeypatch.setattr(service, "thread_output", thread_output)
    return seen


async def _answers(assistant_id: str = "chat") -> list[dict[str, Any]]:
    message = {"jsonrpc": "2.0", "id": "s1", "method": "message/stream", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hi"}]}}}
    return [answer async for answer in a2a_stream.stream_message(None, None, assistant_id, message)]


def _labels(answers: list[dict[str, Any]]) -> list[str]:
    labels = []
    for answer in answers:
        result = answer["result"]
        labels.append("/".join(str(v) for v in (result.get("kind"), (result.get("status") or {}).get("state"),
                                                 result.get("final")) if v is not None))
    return labels


OFFICIAL_ORDER = ["task/submitted"] + ["status-update/working/False"] * 5 + [
    "artifact-update", "status-update/completed/True"]


@pytest.mark.parametrize("sizes", [[9], [1] * 9, [2, 4, 3]], ids=["one batch", "one by one", "mixed"])
async def test_the_answers_are_the_official_ones_however_the_events_are_batched(calls, sizes):
    calls["batches"] = _batches(_chat_run_events(), sizes)
    answers = await _answers()
    assert _labels(answers) == OFFICIAL_ORDER
    texts = [a["result"]["status"]["message"]["parts"][0]["text"] for a in answers[1:6]]
    assert texts == ["hello", "hello ", "hello there", "hello there ", REPLY]
    assert answers[6]["result"]["artifact"]["parts"] == [{"kind": "text", "text": REPLY}]
    assert all(a["id"] == "s1" for a in answers)


async def test_the_run_is_started_by_the_streams_own_events_call(calls):
    """The run is not pushed apart from its reader: a pushed run could start and end before the
    reader came (under load), and its progress was then not streamed (the task went straight
    from submitted to its artifact). Started by the reader's call, the reader sees every event."""
    calls["batches"] = _batches(_chat_run_events(), [9])
    await _answers()
    assert calls["push"] is False and calls["start"] is True
    assert calls["stream_mode"] == ["messages", "values"]


async def test_a_client_leaving_after_the_task_stops_the_reading_not_the_run(calls):
    calls["batches"] = _batches(_chat_run_events(), [9])
    message = {"jsonrpc": "2.0", "id": "s1", "method": "message/stream", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hi"}]}}}
    stream = a2a_stream.stream_message(None, None, "chat", message)
    first = await anext(stream)
    assert first["result"]["kind"] == "task"
    await stream.aclose()  # what Serve does when the client disconnects
    assert calls["start"] is True  # the run was started all the same
