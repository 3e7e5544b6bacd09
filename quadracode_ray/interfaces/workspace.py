"""What a graph or tool may do in a workspace. The sandbox layer implements it.

Paths are relative to /workspace (absolute paths inside /workspace or /shared are accepted
by implementations that support them); anything that would escape raises PathEscapeError.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

DEFAULT_WORKSPACE = "default"
"""The workspace that always exists: the orchestrator's own, and agents' unless they are given another."""
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""An environment variable name a workspace command may be given (checked with re.fullmatch)."""


class WorkspaceError(RuntimeError):
    """A workspace operation failed; the message says why."""


class WorkspaceNotFound(WorkspaceError):
    pass


class PathEscapeError(WorkspaceError, ValueError):
    """A path would leave the workspace (``..``, an absolute path, a symlink pointing outside)."""


class WorkspacePathNotFound(WorkspaceError, FileNotFoundError):
    """The path does not exist in the workspace."""


class WorkspaceInvalidRequest(WorkspaceError, ValueError):
    """The request is malformed or not allowed (bad id, directory where a file is needed, ...)."""


class WorkspaceDiskFull(WorkspaceInvalidRequest):
    """The workspace's disk quota is full (ENOSPC); free space in it, or ask for a bigger quota."""


class WorkspaceConflict(WorkspaceError):
    """The request contradicts existing state (the target exists, a different spec, ...)."""


class WorkspaceUnavailable(WorkspaceError):
    """The workspace's container or container server cannot be reached (Docker down, start failed)."""


class SnapshotNotFound(WorkspaceError, LookupError):
    """No snapshot with that id exists for the workspace."""


class ExecResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exit_code: int | None
    """None when the command was killed at its timeout."""
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False
    truncated: bool = False
    """True when stdout or stderr went past the output cap and was cut."""


class FileInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mtime: datetime


class SnapshotInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshot_id: str
    workspace_id: str
    created_at: datetime
    sha256: str
    size: int
    label: str | None = None


class StdioSession(BaseModel):
    """A process in the workspace whose stdin and stdout the caller drives (``open_stdio``)."""

    model_config = ConfigDict(extra="forbid")
    session_id: str
    command: str


class StdioOutput(BaseModel):
    """What an attached process wrote since the last read, and whether it has ended."""

    model_config = ConfigDict(extra="forbid")
    stdout: bytes
    stderr_tail: str
    """The last few KiB of its stderr so far (diagnostics, never the protocol)."""
    exited: bool
    exit_code: int | None = None


@runtime_checkable
class WorkspaceClient(Protocol):
    """A handle on one workspace. Every method is async and safe to call concurrently."""

    @property
    def workspace_id(self) -> str: ...

    async def exec(
        self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> ExecResult: ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes | str) -> FileInfo: ...

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]: ...

    async def delete(self, path: str, *, recursive: bool = False) -> None: ...

    async def snapshot(self, label: str | None = None) -> SnapshotInfo: ...


@runtime_checkable
class StdioWorkspace(Protocol):
    """A workspace that can run a long-lived process and carry its stdio (an MCP server over
    stdio, say). The process runs in the workspace like any command; ``close_stdio`` or the
    session's idle timeout ends it."""

    async def open_stdio(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession: ...

    async def write_stdio(self, session_id: str, data: bytes, *, close: bool = False) -> None:
        """Send ``data`` to its stdin (``close``: then close its stdin)."""
        ...

    async def read_stdio(self, session_id: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput:
        """Output since the last read, waiting up to ``timeout`` s for some (or for its end)."""
        ...

    async def close_stdio(self, session_id: str) -> None: ...
