"""The MCP endpoint (/mcp): JSON-RPC 2.0 over streamable HTTP, assistants as tools."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from serve_app import mcp_server
from serve_app.auth import current_owner

router = APIRouter(tags=["MCP"])

# Documents the body in the OpenAPI spec; the handler reads it raw, so malformed JSON gets a
# JSON-RPC parse error rather than FastAPI's 422.
_MESSAGE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["jsonrpc"], "properties": {
        "jsonrpc": {"const": "2.0"}, "id": {"type": ["string", "integer"]}, "method": {"type": "string"},
        "params": {"type": "object"}}},
    "example": {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}}}}}



@router.post("/mcp", summary="MCP JSON-RPC message (initialize, ping, tools/list, tools/call)",
             responses={200: {"description": "JSON-RPC response"},
                        202: {"description": "Notification or response accepted"},
                        400: {"description": "Not a JSON-RPC 2.0 message (JSON-RPC error body)"}},
             openapi_extra=_MESSAGE_BODY)
async def mcp_post(request: Request, owner: Annotated[str | None, Depends(current_owner)]) -> Response:
    accept = request.headers.get("accept", "")
    if accept and not any(kind in accept for kind in ("application/json", "text/event-stream", "*/*")):
        return mcp_server.error_response(406, mcp_server.RpcError(mcp_server.INVALID_REQUEST,
                                               "Not Acceptable: Accept must include application/json"))
    try:
        parsed = mcp_server.parse_message(await request.body())
    except mcp_server.RpcError as exc:
        return mcp_server.error_response(400, exc)
    if "method" not in parsed or "id" not in parsed:
        # Notifications (e.g. notifications/initialized) and client responses need no answer.
        if "method" in parsed or "result" in parsed or "error" in parsed:
            return Response(status_code=202)
        return mcp_server.error_response(400, mcp_server.RpcError(mcp_server.INVALID_REQUEST,
                                               "Invalid Request: neither a request, a notification nor a response"),
                      parsed.get("id"))
    return JSONResponse(await mcp_server.handle_request(request.app.state.context, owner, parsed))


@router.get("/mcp", summary="Server-to-client stream (not offered: this server is stateless)",
            status_code=405, response_class=Response)
async def mcp_get() -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})


@router.delete("/mcp", summary="End an MCP session (there are none: stateless)", status_code=405,
               response_class=Response)
async def mcp_delete() -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})
