"""An MCP server over stdio, run inside a workspace container by the tests (stdlib + mcp only)."""

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("files")


@server.tool()
def count_lines(path: str) -> str:
    """Count the lines of a file of the workspace."""
    lines = Path(path).read_text().splitlines()
    return f"{path} has {len(lines)} lines (seen from {os.getcwd()} as uid {os.getuid()})"


@server.tool()
def crash() -> str:
    """End the server's process in the middle of a call."""
    os._exit(7)


if __name__ == "__main__":
    server.run("stdio")
