"""A2A ``message/stream``: the task's progress as server-sent JSON-RPC responses, as the official server.

Every SSE event is ``message`` and its data one JSON-RPC response with the request's id: first
the task (state ``submitted``, the user message as its history), then a ``status-update``
(``working``, not final) per chunk of agent text the run streams, then the end: the response
artifact (``artifact-update``) and a final ``completed`` status; the interrupt artifact and a
final ``input-required`` status carrying the agent's last words; or a final ``failed`` status
carrying the error. A request that cannot start a task gets one error response. The run keeps
going when the client leaves (``tasks/get`` finds it), as ``message/send``'s does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson

from runs.stream import END_EVENT
from serve_app import a2a_server
from serve_app.context import AppContext
from serve_app.mcp_server import INTERNAL_ERROR, RpcError
from serve_app.runs import service

STREAM_METHODS = ("message/stream", "SendStreamingMessage")
# The official server streams these modes for A2A: message chunks as progress, values for the end.
_STREAM_MODES = ["messages", "values"]
_AGENT_TYPES = {"ai", "aimessage", "aimessagechunk", "assistant"}


async def _chain(head: Any, rest: AsyncIterator) -> AsyncIterator:
    if head is not None:
        yield head
    async for items in rest:
        yield items


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _chunk_text(items: Any) -> str:
    """The agent text of one ``messages/*`` event (tool, system and user messages are no speech)."""
    if not isinstance(items, list):
        return ""
    texts = []
    for item in items:
        if not isinstance(item, dict) or str(item.get("type") or item.get("role") or "").lower() not in _AGENT_TYPES:
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append("".join(b.get("text", "") for b in content if isinstance(b, dict)))
    return "".join(texts)


async def stream_message(context: AppContext, owner: str | None, assistant_id: str,
                         message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC responses of one ``message/stream`` (or v1 ``SendStreamingMessage``) request."""
    rpc_id = message["id"]
    v1 = message["method"] == "SendStreamingMessage"

    def answer(result: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": rpc_id, "result": a2a_server.to_v1(result) if v1 else result}

    try:
        assistant = await a2a_server.resolve_assistant(context, assistant_id, owner)
        run, user_message = await a2a_server.start_task(context, owner, assistant, message.get("params") or {},
                                                        stream_mode=_STREAM_MODES, push=False)
    except RpcError as exc:
        yield {"jsonrpc": "2.0", "id": rpc_id, "error": exc.to_json()}
        return
    except Exception as exc:
        yield {"jsonrpc": "2.0", "id": rpc_id,
               "error": {"code": INTERNAL_ERROR, "message": f"Internal error: {type(exc).__name__}: {exc}"}}
        return
    thread_id, run_id = str(run["thread_id"]), str(run["run_id"])
    task_id = a2a_server.task_id_of(thread_id, run_id)
    ids = {"taskId": task_id, "contextId": thread_id}
    # The run starts in this reader's first events call (as runs/stream's do), so the reader
    # follows it from its first event. Pushed by a call of its own, the run raced its reader to
    # the host: under load the reader could come too late for the run's progress.
    events = service.run_events(context, run, start=True)
    first: asyncio.Future | None = asyncio.ensure_future(anext(events, None))
    output: Any = None
    values: Any = None
    try:
        await asyncio.sleep(0)  # one turn of the loop: that call is out even if the client leaves now
        yield answer({"kind": "task", "id": task_id, "contextId": thread_id, "history": [user_message],
                      "status": {"state": "submitted", "timestamp": _now()}})
        head, first = await first, None
        async for items in _chain(head, events):
            for _, event, data in items:
                if event == END_EVENT:
                    output = orjson.loads(data).get("output")
                elif event == "values":
                    values = orjson.loads(data)
                elif event.startswith("messages/") and (text := _chunk_text(orjson.loads(data))):
                    yield answer({**ids, "kind": "status-update", "final": False,
                                  "status": {"state": "working", "timestamp": _now(),
                                             "message": a2a_server.agent_message(
                                                 thread_id, run_id, {"kind": "text", "text": text})}})
    finally:  # also when the client leaves: the run goes on (tasks/get finds it), the reading stops
        if first is not None:
            first.cancel()
        with contextlib.suppress(BaseException):
            await events.aclose()
    if output is None:
        output = await service.thread_output(context, thread_id)
    state = a2a_server.task_state(output)
    status: dict[str, Any] = {"state": state, "timestamp": _now()}
    artifact = a2a_server.result_artifact(state, output, str(assistant["assistant_id"]))
    if artifact is not None:
        update = {**ids, "kind": "artifact-update", "artifact": artifact}
        yield answer({**update, "append": False, "lastChunk": True} if state == "completed" else update)
    if state == "failed":
        status["message"] = a2a_server.failure_message(thread_id, run_id, output)
    elif state == "input-required":
        # As the official server: the input-required status says what the agent last said.
        text = a2a_server.agent_text(values)
        status["message"] = a2a_server.agent_message(
            thread_id, run_id, {"kind": "text", "text": text} if text is not None else {"kind": "data", "data": values})
    yield answer({**ids, "kind": "status-update", "status": status, "final": True})
