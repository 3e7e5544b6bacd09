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
    parsed = await mcp_server.read_request(request, accepted=("application/json", "text/event-stream", "*/*"))
    if isinstance(parsed, Response):
        return parsed
    return JSONResponse(await mcp_server.handle_request(request.app.state.context, owner, parsed))


@router.get("/mcp", summary="Server-to-client stream (not offered: this server is stateless)",
            status_code=405, response_class=Response)
async def mcp_get() -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})


@router.delete("/mcp", summary="End an MCP session (there are none: stateless)", status_code=405,
               response_class=Response)
async def mcp_delete() -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})
