"""How an assistant names the MCP servers whose tools its graph gets (no secrets in here).

An assistant's ``config["configurable"]["mcp_servers"]`` maps a server name to one of::

    {"transport": "stdio", "command": ["python3", "server.py"], "cwd": "tools", "env": {"MODE": "x"}}
    {"transport": "http", "url": "https://mcp.example.com/mcp", "headers": "example"}

A stdio server runs inside the thread's workspace sandbox (never on the host). An HTTP server
is reached over MCP's streamable HTTP; its request headers (tokens) are never part of the
assistant: ``headers`` names an entry of the ``QUADRACODE_MCP_HEADERS`` setting, which only the
processes running graphs read. The server's name prefixes its tools: ``<name>__<tool>``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from quadracode_ray.interfaces.workspace import ENV_NAME

SERVER_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
TOOL_SEPARATOR = "__"


class StdioServer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transport: Literal["stdio"] = "stdio"
    command: list[str] = Field(min_length=1, max_length=64,
                               description="The server's argv, run in the thread's workspace (no shell).")
    cwd: str = Field(default=".", max_length=4096, description="Working folder, relative to /workspace.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables (not secrets: "
                                "the assistant's config is readable by whoever reads the assistant).")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Longest one request to the server may take.")

    @field_validator("command")
    @classmethod
    def _argv(cls, argv: list[str]) -> list[str]:
        if any(not part or "\x00" in part or len(part) > 4096 for part in argv):
            raise ValueError("every argument must be 1-4096 characters without NUL")
        return argv

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not re.fullmatch(ENV_NAME, key) or "\x00" in value:
                raise ValueError(f"invalid environment variable {key!r}")
        return env


class HttpServer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transport: Literal["http"]
    url: str = Field(pattern=r"^https?://", max_length=2048, description="The streamable HTTP endpoint.")
    headers: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                description="Name of an entry of QUADRACODE_MCP_HEADERS whose headers are sent.")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Longest one request to the server may take.")


McpServer = Annotated[StdioServer | HttpServer, Field(discriminator="transport")]


class McpServers(BaseModel):
    """Validates the ``mcp_servers`` mapping (names usable as tool-name prefixes)."""

    model_config = ConfigDict(extra="forbid")
    servers: dict[str, McpServer] = Field(default_factory=dict, max_length=16)

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in servers:
            if not re.match(SERVER_NAME, name) or TOOL_SEPARATOR in name:
                raise ValueError(f"MCP server name {name!r}: use 1-32 letters, digits, '_' or '-' (no '__'), "
                                 "starting with a letter")
        return servers


class McpHeadersError(ValueError):
    """The headers an HTTP server's config names are not in the settings."""


def headers_from_settings(raw: SecretStr | None, name: str | None) -> dict[str, str]:
    """The headers entry ``name`` of ``QUADRACODE_MCP_HEADERS`` (JSON ``{name: {header: value}}``)."""
    if name is None:
        return {}
    table = json.loads(raw.get_secret_value()) if raw is not None else {}
    entry = table.get(name) if isinstance(table, dict) else None
    if not isinstance(entry, dict):
        # Only the entry's name is said: the values are secrets.
        raise McpHeadersError(f"no MCP headers named {name!r} in QUADRACODE_MCP_HEADERS")
    return {str(k): str(v) for k, v in entry.items()}
