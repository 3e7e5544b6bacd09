"""A2A routes: agent cards and the JSON-RPC endpoint of each assistant."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from serve_app import a2a_server, a2a_stream, mcp_server
from serve_app.auth import current_owner
from serve_app.runs.sse import SSE_HEADERS, frame, with_heartbeats

router = APIRouter(tags=["A2A"])
Owner = Annotated[str | None, Depends(current_owner)]

_MESSAGE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["jsonrpc", "id", "method"]},
    "example": {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "kind": "message", "role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hello"}]}}}}}}}


def _base_url(request: Request) -> str:
    # The API's own root, whether or not Serve mounts it under a prefix.
    return str(request.base_url).rstrip("/")


async def _card(request: Request, assistant_id: str, owner: str | None) -> Response:
    try:
        card = await a2a_server.agent_card(request.app.state.context, assistant_id, owner, _base_url(request),
                                           bool(getattr(request.app.state, "auth_enabled", False)))
    except mcp_server.RpcError as exc:
        return JSONResponse({"detail": exc.message}, status_code=404)
    return JSONResponse(card)


@router.get("/.well-known/agent-card.json", summary="Agent card of one assistant (by query parameter)")
async def domain_agent_card(request: Request, owner: Owner,
                            assistant_id: Annotated[str, Query(description="Assistant UUID or graph name")]) -> Response:
    return await _card(request, assistant_id, owner)


@router.get("/a2a/{assistant_id}/.well-known/agent-card.json", summary="Agent card of one assistant")
async def assistant_agent_card(assistant_id: str, request: Request, owner: Owner) -> Response:
    return await _card(request, assistant_id, owner)


@router.get("/a2a/{assistant_id}", summary="Agent card of one assistant (GET on the agent's URL)")
async def agent_url_card(assistant_id: str, request: Request, owner: Owner) -> Response:
    return await _card(request, assistant_id, owner)


def _accepts(accept: str, media_type: str) -> bool:
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {media_type, media_type.split("/", 1)[0] + "/*", "*/*"})


@router.post("/a2a/{assistant_id}",
             summary="A2A JSON-RPC: message/send, message/stream (SSE), tasks/get, tasks/cancel",
             openapi_extra=_MESSAGE_BODY)
async def a2a_rpc(assistant_id: str, request: Request, owner: Owner) -> Response:
    message = await mcp_server.read_request(request, accepted=("application/json", "text/event-stream", "*/*"))
    if isinstance(message, Response):
        return message
    context = request.app.state.context
    accept = request.headers.get("accept", "")
    if message["method"] not in a2a_stream.STREAM_METHODS:
        if accept and not _accepts(accept, "application/json"):
            return JSONResponse({"error": "Accept header must include application/json"}, status_code=400)
        return JSONResponse(await a2a_server.handle_request(context, owner, assistant_id, message))
    if accept and not _accepts(accept, "text/event-stream"):
        # As the official server: a stream is only sent to a client that says it reads one.
        return JSONResponse({"error": "Accept header must include text/event-stream for streaming"},
                            status_code=400)

    async def events():
        async for answer in a2a_stream.stream_message(context, owner, assistant_id, message):
            yield frame("message", orjson.dumps(answer))

    # Heartbeats as on our run streams: a task can work for minutes between two updates.
    return StreamingResponse(with_heartbeats(events()), media_type="text/event-stream; charset=utf-8",
                             headers=SSE_HEADERS)

