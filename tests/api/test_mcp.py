"""The MCP endpoint over real HTTP: assistants as tools, JSON-RPC shapes and errors."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def rpc(method: str, params: dict[str, Any] | None = None, id_: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


async def call(lg_client, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return await lg_client.http.post("/mcp", json=rpc(method, params), headers=MCP_HEADERS)


async def test_initialize_negotiates_the_protocol_version(lg_client) -> None:
    answer = await call(lg_client, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                                  "clientInfo": {"name": "test", "version": "0"}})
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 1
    assert answer["result"]["protocolVersion"] == "2025-06-18"
    assert answer["result"]["capabilities"] == {"tools": {"listChanged": False}}
    assert answer["result"]["serverInfo"]["name"] == "quadracode-ray"
    unknown = await call(lg_client, "initialize", {"protocolVersion": "1999-01-01"})
    assert unknown["result"]["protocolVersion"] == "2025-11-25"
    assert (await call(lg_client, "ping"))["result"] == {}


async def test_tools_list_shows_assistants_with_object_schemas(lg_client) -> None:
    name = f"mcp_{uuid.uuid4().hex[:8]}"
    await lg_client.assistants.create("echo", name=name, description="Echoes items.")
    tools = (await call(lg_client, "tools/list"))["result"]["tools"]
    by_name = {tool["name"]: tool for tool in tools}
    assert name in by_name, sorted(by_name)
    assert by_name[name]["description"] == "Echoes items."
    assert by_name[name]["title"] == name
    schema = by_name[name]["inputSchema"]
    assert schema["type"] == "object" and "items" in schema["properties"]
    assert set(by_name[name]["annotations"]) == {"readOnlyHint", "destructiveHint", "idempotentHint",
                                                 "openWorldHint"}
    assert "echo" in by_name  # the graph's default assistant


async def test_tools_call_runs_the_assistant(lg_client) -> None:
    answer = await call(lg_client, "tools/call", {"name": "echo", "arguments": {"items": ["x"]}})
    result = answer["result"]
    assert result["structuredContent"] == {"items": ["x", "a"]}
    assert result["content"][0]["type"] == "text" and '"items"' in result["content"][0]["text"]
    assert "isError" not in result


async def test_a_failing_run_is_a_tool_error_not_a_protocol_error(lg_client) -> None:
    result = (await call(lg_client, "tools/call", {"name": "echo", "arguments": {"fail": True}}))["result"]
    assert result["isError"] is True
    assert "boom" in result["content"][0]["text"]


@pytest.mark.parametrize("method, params, code", [
    ("tools/call", {"name": "no-such-tool", "arguments": {}}, -32602),
    ("tools/call", {"arguments": {}}, -32602),
    ("tools/call", {"name": "echo", "arguments": [1, 2]}, -32602),
    ("tools/list", {"cursor": "not-a-cursor"}, -32602),
    ("resources/list", {}, -32601),
])
async def test_bad_requests_get_json_rpc_errors(lg_client, method: str, params: dict, code: int) -> None:
    answer = await call(lg_client, method, params)
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert "result" not in answer


def test_malformed_messages_and_other_http_methods(api_url: str) -> None:
    with httpx.Client(base_url=api_url, headers=MCP_HEADERS) as http:
        parse = http.post("/mcp", content=b"{not json", headers={"Content-Type": "application/json"})
        assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700
        assert parse.json()["id"] is None
        batch = http.post("/mcp", json=[rpc("ping")])
        assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
        wrong_version = http.post("/mcp", json={"jsonrpc": "1.0", "id": 1, "method": "ping"})
        assert wrong_version.json()["error"]["code"] == -32600
        notification = http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert notification.status_code == 202 and notification.content == b""
        client_response = http.post("/mcp", json={"jsonrpc": "2.0", "id": 7, "result": {}})
        assert client_response.status_code == 202
        assert http.get("/mcp").status_code == 405
        assert http.delete("/mcp").status_code == 405
    not_acceptable = httpx.post(f"{api_url}/mcp", json=rpc("ping"), headers={"Accept": "text/html"})
    assert not_acceptable.status_code == 406
