"""The sandbox API, written once: the operations on one workspace.

``WorkspaceService`` (in-process), the ``WorkspaceSandbox`` Ray actor and
``WorkspaceSandboxClient`` all offer exactly these, with these signatures; a test holds them to
it (``tests/sandbox/test_protocol.py``; the actor takes its arguments positionally, as the
client sends them). It extends ``WorkspaceClient``, the part graphs and tools use. The
conformance suites in ``sandbox.testing.conformance`` say what the operations do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    SnapshotInfo,
    StdioOutput,
    StdioSession,
    StdioWorkspace,
    WorkspaceClient,
)
from sandbox.models import (
    BackgroundOutput,
    BackgroundProcess,
    ExecOutput,
    SnapshotDiff,
    WorkspaceInfo,
    WorkspaceSpec,
)


@runtime_checkable
class WorkspaceOperations(WorkspaceClient, StdioWorkspace, Protocol):
    """Every method is async and safe to call concurrently; failures are the typed errors of
    ``quadracode_ray.interfaces.workspace``."""

    @property
    def workspace_id(self) -> str: ...

    # --- lifecycle ---------------------------------------------------------------------------------
    async def ensure(self, spec: WorkspaceSpec | None = None) -> WorkspaceInfo:
        """Create (idempotent) and start the workspace; WorkspaceConflict for a different spec."""
        ...

    async def start(self) -> WorkspaceInfo: ...

    async def stop(self) -> WorkspaceInfo:
        """Stop the machine; files stay, background processes end."""
        ...

    async def destroy(self, *, remove_volume: bool = False) -> None:
        """Remove the machine; its files too with ``remove_volume``."""
        ...

    async def info(self) -> WorkspaceInfo: ...

    # --- exec --------------------------------------------------------------------------------------
    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        """Run ``bash -c command``; at ``timeout`` its whole process tree is killed."""
        ...

    def exec_stream(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                    timeout: float = 60.0) -> AsyncIterator[ExecOutput | ExecResult]:
        """Output pieces as they come, then the ExecResult; leaving early kills the command."""
        ...

    async def start_process(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> BackgroundProcess: ...

    async def poll_process(self, process_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0) -> BackgroundOutput: ...

    async def kill_process(self, process_id: str) -> BackgroundProcess: ...

    async def list_processes(self) -> list[BackgroundProcess]: ...

    async def open_stdio(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession:
        """A long-lived process whose stdio the caller drives (sandbox/stdio.py)."""
        ...

    async def write_stdio(self, session_id: str, data: bytes, *, close: bool = False) -> None: ...

    async def read_stdio(self, session_id: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput: ...

    async def close_stdio(self, session_id: str) -> None: ...

    # --- files -------------------------------------------------------------------------------------
    async def read_file(self, path: str) -> bytes: ...

    async def read_text(self, path: str, encoding: str = "utf-8") -> str: ...

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None) -> FileInfo: ...

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]: ...

    async def stat(self, path: str) -> FileInfo: ...

    async def delete(self, path: str, *, recursive: bool = False) -> None: ...

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> FileInfo: ...

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo: ...

    async def copy(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        """Either side may be under the shared folder: the hand-over between workspaces."""
        ...

    async def upload_tar(self, data: bytes, dest: str = ".") -> int:
        """Extract a tar under ``dest`` (every member vetted first); returns the member count."""
        ...

    async def download_tar(self, paths: list[str] | None = None) -> bytes: ...

    # --- snapshots ---------------------------------------------------------------------------------
    async def snapshot(self, label: str | None = None) -> SnapshotInfo: ...

    async def list_snapshots(self) -> list[SnapshotInfo]: ...

    async def diff_snapshot(self, snapshot_id: str) -> SnapshotDiff: ...

    async def restore_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        """Make the workspace exactly what it was at the snapshot (later files removed)."""
        ...

    async def delete_snapshot(self, snapshot_id: str) -> None: ...


OPERATIONS: tuple[str, ...] = tuple(
    name for name, value in vars(WorkspaceOperations).items()
    if callable(value) and not name.startswith("_")
)
"""The operation names, in declaration order."""
