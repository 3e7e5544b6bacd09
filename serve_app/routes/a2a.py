"""A2A routes: agent cards and the JSON-RPC endpoint of each assistant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from serve_app import a2a_server, mcp_server
from serve_app.auth import current_owner

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


@router.post("/a2a/{assistant_id}", summary="A2A JSON-RPC: message/send, tasks/get, tasks/cancel",
             openapi_extra=_MESSAGE_BODY)
async def a2a_rpc(assistant_id: str, request: Request, owner: Owner) -> Response:
    message = await mcp_server.read_request(request)
    if isinstance(message, Response):
        return message
    return JSONResponse(await a2a_server.handle_request(request.app.state.context, owner, assistant_id, message))

