"""MCP (Model Context Protocol) over streamable HTTP: every assistant is a tool.

Stateless JSON-RPC 2.0 on ``POST /mcp`` (no sessions, JSON responses), as the official server:
``initialize``, ``ping``, ``tools/list`` (assistants with their input schemas, paged by cursor)
and ``tools/call`` (a stateless run of the assistant, waited for; its output is the result).
Malformed messages get JSON-RPC errors (-32700 parse, -32600 invalid request, -32601 unknown
method, -32602 bad params); a run that fails is a tool result with ``isError``, as MCP asks.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from quadracode_ray import __version__
from serve_app.context import AppContext
from serve_app.records import assistants as assistant_records
from serve_app.runs import service
from serve_app.schemas import AssistantSearch, RunCreate

log = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
SUPPORTED_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[-1]
PAGE_SIZE = 100
MAX_ASSISTANTS = 1000
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_\-.]")


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_response(status: int, error: RpcError, id_: Any = None) -> JSONResponse:
    """A JSON-RPC error outside any request (malformed message): HTTP ``status``, id null."""
    return JSONResponse({"jsonrpc": "2.0", "id": id_, "error": error.to_json()}, status_code=status)


def tool_name(assistant_name: str) -> str:
    """An MCP tool name (letters, digits, _ - . only; 1-128 characters) for an assistant's name."""
    return _INVALID_NAME_CHARS.sub("_", assistant_name)[:128] or "_"


def error_text(error: Any) -> str:
    """``ValueError: boom`` from a run's ``__error__`` (``{"error": kind, "message": text}``)."""
    if isinstance(error, dict):
        return ": ".join(str(part) for part in (error.get("error"), error.get("message")) if part) or str(error)
    return str(error)


def parse_message(body: bytes) -> dict[str, Any]:
    """One JSON-RPC message; raises RpcError for anything else (batches are not part of MCP now)."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}") from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "Invalid Request: batches are not supported; send one message per POST")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object with jsonrpc '2.0'")
    if "id" in message and not isinstance(message["id"], str | int) or isinstance(message.get("id"), bool):
        raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    if "method" in message and not isinstance(message["method"], str):
        raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a string")
    if "params" in message and not isinstance(message["params"], dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: must be an object")
    return message


def initialize(params: dict[str, Any]) -> dict[str, Any]:
    requested = params.get("protocolVersion")
    return {
        "protocolVersion": requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "quadracode-ray", "title": "Quadracode-Ray LangGraph API", "version": __version__},
    }


async def _assistants(context: AppContext, owner: str | None, *, offset: int, limit: int) -> list[dict]:
    pool = await context.ready()
    rows, _ = await assistant_records.search(
        pool, AssistantSearch(limit=limit, offset=offset, sort_by="created_at", sort_order="asc"), owner)
    return rows


async def _input_schema(context: AppContext, assistant: dict) -> dict[str, Any] | None:
    try:
        graph = await context.graphs.build(assistant["graph_id"], assistant["config"], checkpointer=None)
    except Exception as exc:  # an assistant whose graph cannot load is left out, not fatal
        log.warning("MCP: assistant %s left out: %s", assistant["assistant_id"], exc)
        return None
    try:
        schema = dict(graph.get_input_jsonschema() or {})
    except Exception:
        # pydantic cannot describe some states (typing.TypedDict before Python 3.12): name the
        # input keys without types rather than hide a tool that works.
        schema = {"type": "object", "properties": {key: {} for key in _input_keys(graph)},
                  "additionalProperties": True}
    schema.setdefault("type", "object")  # MCP requires an object schema
    return schema


def _input_keys(graph: Any) -> list[str]:
    input_type = getattr(getattr(graph, "builder", None), "input_schema", None)
    keys = list(getattr(input_type, "__annotations__", {}) or {})
    if keys:
        return keys
    channels = getattr(graph, "stream_channels", None) or []
    return [channels] if isinstance(channels, str) else list(channels)


async def list_tools(context: AppContext, owner: str | None, params: dict[str, Any]) -> dict[str, Any]:
    cursor = params.get("cursor") or "0"
    if not str(cursor).isdigit():
        raise RpcError(INVALID_PARAMS, f"Invalid params: unknown cursor {cursor!r}")
    offset = int(cursor)
    assistants = await _assistants(context, owner, offset=offset, limit=PAGE_SIZE)
    tools, seen = [], set()
    for assistant in assistants:
        name = tool_name(assistant["name"])
        if name in seen:  # two assistants with one name: only the older is reachable as a tool
            continue
        seen.add(name)
        schema = await _input_schema(context, assistant)
        if schema is None:
            continue
        tools.append({
            "name": name,
            "title": assistant["name"],
            "description": assistant.get("description") or f"Runs the {assistant['name']} assistant "
                                                            f"(graph {assistant['graph_id']}) and returns its output.",
            "inputSchema": schema,
            "annotations": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False,
                            "openWorldHint": True},
        })
    result: dict[str, Any] = {"tools": tools}
    if len(assistants) == PAGE_SIZE:
        result["nextCursor"] = str(offset + PAGE_SIZE)
    return result


async def call_tool(context: AppContext, owner: str | None, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if not isinstance(name, str) or not name:
        raise RpcError(INVALID_PARAMS, "Invalid params: 'name' (the tool to call) is required")
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
    matches = [a for a in await _assistants(context, owner, offset=0, limit=MAX_ASSISTANTS)
               if tool_name(a["name"]) == name]
    if not matches:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
    assistant = matches[0]
    run_context = params.get("context")
    try:
        body = RunCreate(assistant_id=str(assistant["assistant_id"]), input=arguments,
                         context=run_context if isinstance(run_context, dict) else None, on_completion="delete")
        run = await service.create_run(context, body, thread_id=None, owner=owner)
        output = await service.final_output(context, run)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if status is not None and 400 <= status < 500:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {getattr(exc, 'detail', exc)}") from None
        raise
    if isinstance(output, dict) and "__error__" in output:
        return {"isError": True, "content": [{"type": "text", "text": error_text(output["__error__"])}]}
    result: dict[str, Any] = {"content": [{"type": "text", "text": orjson.dumps(output, default=str).decode()}]}
    if isinstance(output, dict):
        result["structuredContent"] = output
    return result


async def handle_request(context: AppContext, owner: str | None, message: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC response to one request (a message with an id and a method)."""
    method, params = message["method"], message.get("params") or {}
    try:
        if method == "initialize":
            result = initialize(params)
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = await list_tools(context, owner, params)
        elif method == "tools/call":
            result = await call_tool(context, owner, params)
        else:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
    except RpcError as exc:
        return {"jsonrpc": "2.0", "id": message["id"], "error": exc.to_json()}
    except Exception as exc:  # an internal failure still answers in JSON-RPC form
        log.exception("MCP %s failed", method)
        return {"jsonrpc": "2.0", "id": message["id"],
                "error": {"code": INTERNAL_ERROR, "message": f"Internal error: {type(exc).__name__}: {exc}"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


async def read_request(request: Request, *, accepted: tuple[str, ...] = ("application/json", "*/*")) -> dict | Response:
    """The JSON-RPC request a POST carries (MCP and A2A alike), or the response that answers it at
    once: 406 when Accept rules out JSON, 400 when the body is not one JSON-RPC 2.0 request, 202 for
    a notification or a client's response (they need no answer)."""
    accept = request.headers.get("accept", "")
    if accept and not any(kind in accept for kind in accepted):
        return error_response(406, RpcError(INVALID_REQUEST, "Not Acceptable: Accept must include application/json"))
    try:
        message = parse_message(await request.body())
    except RpcError as exc:
        return error_response(400, exc)
    if "method" not in message or "id" not in message:
        if "method" in message or "result" in message or "error" in message:
            return Response(status_code=202)
        return error_response(400, RpcError(INVALID_REQUEST, "Invalid Request: a request needs an id and a method"),
                              message.get("id"))
    return message
