"""MCP transports of the agents: stdio to a server in the thread's workspace, streamable HTTP.

``workspace_stdio`` is the MCP SDK's ``Transport`` (an async context manager giving its read and
write streams) over a ``StdioWorkspace`` session: the server process runs inside the workspace
sandbox, never on the host, and its stdout is hostile input: a line (one JSON-RPC message)
longer than ``MAX_LINE_BYTES`` ends the session instead of growing a buffer.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import AsyncIterator

import anyio
import httpx2
import mcp_types
from mcp.client._transport import TransportStreams
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage

from quadracode_ray.interfaces.workspace import StdioWorkspace, WorkspaceError
from quadracode_ray.tools.mcp_config import HttpServer, StdioServer

MAX_LINE_BYTES = 8 << 20
READ_WAIT_S = 30.0


class McpTransportError(RuntimeError):
    """The server's process or connection failed; the message says how (with its stderr's end)."""


@contextlib.asynccontextmanager
async def workspace_stdio(workspace: StdioWorkspace, server: StdioServer,
                          ended: list[str] | None = None) -> AsyncIterator[TransportStreams]:
    """``ended`` gets how the process ended (exit code, stderr's end) if it ends first: the SDK
    reports only a closed connection."""
    if not isinstance(workspace, StdioWorkspace):
        raise McpTransportError("this run's workspace cannot run processes over stdio (no stdio sessions)")
    try:
        session = await workspace.open_stdio(shlex.join(server.command), cwd=server.cwd, env=server.env)
    except WorkspaceError as exc:
        raise McpTransportError(f"could not start {shlex.join(server.command)!r} in the workspace: {exc}") from None
    session_id = session.session_id
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

    async def pump_stdout() -> None:
        buffer = b""
        async with read_writer:
            while True:
                output = await workspace.read_stdio(session_id, timeout=READ_WAIT_S)
                buffer += output.stdout
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        await read_writer.send(_parse(line))
                if len(buffer) > MAX_LINE_BYTES:
                    await read_writer.send(McpTransportError(f"the server wrote a line over {MAX_LINE_BYTES} bytes"))
                    return
                if output.exited:
                    tail = output.stderr_tail.strip()[-2000:]
                    if ended is not None:
                        ended.append(f"the server exited (code {output.exit_code})"
                                     + (f"; its stderr ends with: {tail}" if tail else ""))
                    return

    async def pump_stdin() -> None:
        async with write_reader:
            async for message in write_reader:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await workspace.write_stdio(session_id, data.encode())

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(pump_stdout)
            group.start_soon(pump_stdin)
            try:
                yield read_stream, write_stream
            finally:
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await workspace.close_stdio(session_id)


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return McpTransportError(f"the server wrote something that is not JSON-RPC: {str(exc)[:500]}")


@contextlib.asynccontextmanager
async def http(server: HttpServer, headers: dict[str, str]) -> AsyncIterator[TransportStreams]:
    timeout = httpx2.Timeout(min(server.timeout_s, 30.0), read=server.timeout_s)
    async with create_mcp_http_client(headers=headers, timeout=timeout) as client:
        async with streamable_http_client(server.url, http_client=client) as streams:
            yield streams
