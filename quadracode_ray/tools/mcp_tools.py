"""MCP servers' tools as the graphs' tools, named ``<server>__<tool>``.

``mcp_tool_source`` gives the graphs a coroutine that lists every configured server's tools
(concurrently, each within its timeout). Each tool call opens its own MCP session (for a stdio
server: a process in the workspace), calls, and closes it, so nothing outlives the call: no
process left in a workspace, no connection left open when a run is cancelled or its actor dies.

A server that fails is reported, never a crashed run: at listing, the model is offered one
stand-in tool ``<server>__unavailable`` whose call returns the failure, and a call that fails
returns a tool error; both are reported (``mcp_server_failed``) on the run's stream and to the
``EventReporter`` the host gives (the event bus). Headers come from the settings and appear in
no message, event or log: failures are described by the server's name and URL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from langgraph.config import get_stream_writer
from pydantic import BaseModel, ConfigDict, SecretStr

from quadracode_ray.interfaces.events import EventReporter
from quadracode_ray.interfaces.workspace import WorkspaceClient
from quadracode_ray.tools.base import Tool, ToolContext, ToolOutcome, error_outcome
from quadracode_ray.tools.mcp_config import (
    TOOL_SEPARATOR,
    HttpServer,
    McpHeadersError,
    McpServer,
    StdioServer,
    headers_from_settings,
)

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger(__name__)
MCP_SERVER_FAILED = "mcp_server_failed"
MAX_TOOLS_PER_SERVER = 128
MAX_DESCRIPTION = 2000

ToolSource = Callable[[str], Awaitable[Sequence[Tool]]]
"""thread_id -> the tools to add to a graph's (resolved once per graph, on its first model call)."""


class McpArgs(BaseModel):
    """Any JSON object: the MCP server validates its own arguments against its schema."""

    model_config = ConfigDict(extra="allow")


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServerFailed(RuntimeError):
    pass


def _describe(error: BaseException) -> str:
    """An exception (maybe a group of them, from the SDK's task groups) as one line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


class McpServerConnection:
    """How to reach one configured server; ``session()`` is a connected ``mcp.Client``."""

    def __init__(self, name: str, config: McpServer, workspace: WorkspaceClient | None,
                 headers: SecretStr | None):
        self.name, self.config, self.workspace, self._headers = name, config, workspace, headers

    @property
    def where(self) -> str:
        if isinstance(self.config, StdioServer):
            return f"stdio {' '.join(self.config.command)!r} in workspace " \
                   f"{getattr(self.workspace, 'workspace_id', 'none')!r}"
        return f"http {self.config.url}"

    def session(self, ended: list[str]) -> AbstractAsyncContextManager[Client]:
        # The MCP SDK is imported when a server is first reached, not with the graphs: every
        # process running a graph (API replica, run executors, agents) would pay ~0.5 s for it.
        from mcp import Client

        from quadracode_ray.tools.mcp_transport import http, workspace_stdio

        if isinstance(self.config, HttpServer):
            transport = http(self.config, headers_from_settings(self._headers, self.config.headers))
        else:
            transport = workspace_stdio(self.workspace, self.config, ended)
        return Client(transport, read_timeout_seconds=self.config.timeout_s)

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Client]:
        """A session within the server's timeout; a failure says how the process ended, if it did."""
        ended: list[str] = []
        try:
            async with asyncio.timeout(self.config.timeout_s), self.session(ended) as client:
                yield client
        except McpHeadersError:
            raise
        except Exception as exc:  # noqa: BLE001 - said in one line, with the process's end
            detail = _describe(exc) if not isinstance(exc, TimeoutError) else \
                f"no answer within {self.config.timeout_s:g} s"
            raise McpServerFailed("; ".join([detail, *ended])) from None

    async def list_tools(self) -> list[Any]:
        async with self.connected() as client:
            tools, cursor = [], None
            while len(tools) < MAX_TOOLS_PER_SERVER:
                page = await client.list_tools(cursor=cursor)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools[:MAX_TOOLS_PER_SERVER]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        async with self.connected() as client:
            result = await client.call_tool(tool, arguments)
        text = _content_text(result.content, result.structured_content)
        return error_outcome(text) if result.is_error else ToolOutcome(content=text)


def _content_text(blocks: Sequence[Any], structured: Any) -> str:
    parts = []
    for block in blocks:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource_link" or kind == "resource":
            parts.append(json.dumps(block.model_dump(mode="json", exclude_none=True))[:4000])
        else:
            parts.append(f"[{kind} content of type {getattr(block, 'mime_type', '?')} left out]")
    if not parts and structured is not None:
        parts.append(json.dumps(structured, default=str))
    return "\n".join(parts)


class McpToolset:
    """The tools of the configured servers, for one graph; failures go to ``report``."""

    def __init__(self, servers: dict[str, McpServer], workspace: WorkspaceClient | None,
                 headers: SecretStr | None, events: EventReporter | None):
        self.connections = [McpServerConnection(name, config, workspace, headers) for name, config in servers.items()]
        self.events = events

    def report(self, connection: McpServerConnection, thread_id: str, stage: str, error: str) -> None:
        payload = {"event": MCP_SERVER_FAILED, "server": connection.name, "where": connection.where,
                   "stage": stage, "error": error}
        log.warning("MCP server %s (%s) failed at %s: %s", connection.name, connection.where, stage, error)
        try:
            get_stream_writer()(payload)  # the run's custom stream
        except Exception:  # noqa: BLE001 - outside a run, or a writer that failed: the bus still hears
            pass
        if self.events is not None:
            try:
                self.events.report(MCP_SERVER_FAILED, payload, thread_id=thread_id or None)
            except Exception:  # noqa: BLE001 - reporting must never fail the run
                log.debug("an MCP failure report was not delivered", exc_info=True)

    async def tools(self, thread_id: str) -> list[Tool]:
        listed = await asyncio.gather(*(self._server_tools(c, thread_id) for c in self.connections))
        return [tool for tools in listed for tool in tools]

    async def _server_tools(self, connection: McpServerConnection, thread_id: str) -> list[Tool]:
        try:
            listed = await connection.list_tools()
        except Exception as exc:  # noqa: BLE001 - any failure of a server is reported, never raised
            error = f"MCP server {connection.name!r} ({connection.where}) could not be reached: {_describe(exc)}"
            self.report(connection, thread_id, "list_tools", error)

            async def unavailable(_args: Any, _ctx: ToolContext) -> ToolOutcome:
                return error_outcome(error)

            return [Tool(f"{connection.name}{TOOL_SEPARATOR}unavailable",
                         f"The MCP server {connection.name!r} failed to start or answer, so none of its tools are "
                         f"available. Calling this returns the error. {error}"[:MAX_DESCRIPTION], NoArgs, unavailable)]
        tools: dict[str, Tool] = {}
        for raw in listed:
            tool = self._tool(connection, raw)
            tools.setdefault(tool.name, tool)  # two names that read the same once cleaned: the first
        return list(tools.values())

    def _tool(self, connection: McpServerConnection, raw: Any) -> Tool:
        async def run(args: McpArgs, ctx: ToolContext) -> ToolOutcome:
            try:
                return await connection.call(raw.name, args.model_dump())
            except Exception as exc:  # noqa: BLE001 - the model sees the failure as a tool error
                error = f"MCP server {connection.name!r} ({connection.where}) failed during {raw.name}: {_describe(exc)}"
                self.report(connection, ctx.thread_id, "call_tool", error)
                return error_outcome(error)

        schema = dict(raw.input_schema) if isinstance(raw.input_schema, dict) else {}
        if schema.setdefault("type", "object") != "object":
            schema = {"type": "object", "properties": {}}
        # Model APIs take [A-Za-z0-9_-]{1,64} as tool names; the server's own name is what is called.
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{connection.name}{TOOL_SEPARATOR}{raw.name}")[:64]
        return Tool(name, (raw.description or raw.name)[:MAX_DESCRIPTION], McpArgs, run, parameters=schema)


def mcp_tool_source(servers: dict[str, McpServer], workspace: WorkspaceClient | None, headers: SecretStr | None,
                    events: EventReporter | None) -> ToolSource | None:
    """The ToolSource for an assistant's ``mcp_servers`` (None when it names none)."""
    if not servers:
        return None
    toolset = McpToolset(servers, workspace, headers, events)
    return toolset.tools
