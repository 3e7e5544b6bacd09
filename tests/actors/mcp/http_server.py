"""An MCP server over streamable HTTP on the host, started by the tests, that wants a bearer token."""

from __future__ import annotations

import threading

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

from tests.polling import eventually_sync


def _app(token: str):
    server = MCPServer("search")

    @server.tool()
    def lookup(term: str) -> str:
        """Look a term up in the glossary."""
        return {"ray": "a distributed runtime", "mcp": "the model context protocol"}.get(term.lower(), "unknown")

    async def require_token(request, call_next):
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)

    app = server.streamable_http_app()
    app.add_middleware(BaseHTTPMiddleware, dispatch=require_token)
    return app


class HttpMcpServer:
    """The server on 127.0.0.1:<port>/mcp, in a thread of the test process."""

    def __init__(self, port: int, token: str):
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.server = uvicorn.Server(uvicorn.Config(_app(token), host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> HttpMcpServer:
        self.thread.start()
        eventually_sync(lambda: self.server.started, timeout=30, what="the HTTP MCP server to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
