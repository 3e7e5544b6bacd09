"""A tiny in-memory WorkspaceClient for the fabric's tests (agents get one each)."""

from __future__ import annotations

import ast
import hashlib
import uuid
from datetime import UTC, datetime

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    PathEscapeError,
    SnapshotInfo,
    WorkspaceError,
)


class MemoryWorkspace:
    def __init__(self, workspace_id: str = "default"):
        self._id = workspace_id
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []

    @property
    def workspace_id(self) -> str:
        return self._id

    @staticmethod
    def _key(path: str) -> str:
        if path.startswith("/") or ".." in path.split("/"):
            raise PathEscapeError(f"{path!r} leaves the workspace")
        return path.strip("/")

    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        self.commands.append(command)
        if command.startswith("echo "):
            return ExecResult(exit_code=0, stdout=command[5:] + "\n", stderr="", duration_ms=0.0)
        if command.startswith("python3 ") or command.startswith("python "):
            return self._python(command.split(" ", 1)[1].strip())
        if command == "false":
            return ExecResult(exit_code=1, stdout="", stderr="false failed", duration_ms=0.0)
        return ExecResult(exit_code=127, stdout="", stderr=f"{command}: not found", duration_ms=0.0)

    def _python(self, path: str) -> ExecResult:
        """Runs files made of print(<literal>) lines, which is what the scripted model writes."""
        source = self.files.get(self._key(path))
        if source is None:
            return ExecResult(exit_code=2, stdout="", stderr=f"can't open file {path!r}", duration_ms=0.0)
        out = []
        for line in source.decode().splitlines():
            line = line.strip()
            if line.startswith("print(") and line.endswith(")"):
                out.append(str(ast.literal_eval(line[6:-1])))
            elif line and not line.startswith("#"):
                return ExecResult(exit_code=1, stdout="", stderr=f"cannot run {line!r}", duration_ms=0.0)
        return ExecResult(exit_code=0, stdout="".join(f"{o}\n" for o in out), stderr="", duration_ms=0.0)

    async def read_file(self, path: str) -> bytes:
        try:
            return self.files[self._key(path)]
        except KeyError:
            raise WorkspaceError(f"no such file {path!r}") from None

    async def write_file(self, path: str, data: bytes | str) -> FileInfo:
        key = self._key(path)
        self.files[key] = data.encode() if isinstance(data, str) else data
        return FileInfo(path=key, type="file", size=len(self.files[key]), mtime=datetime.now(UTC))

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        return [FileInfo(path=k, type="file", size=len(v), mtime=datetime.now(UTC)) for k, v in sorted(self.files.items())]

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        self.files.pop(self._key(path), None)

    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        digest = hashlib.sha256(b"".join(self.files.values())).hexdigest()
        return SnapshotInfo(snapshot_id=uuid.uuid4().hex, workspace_id=self._id, created_at=datetime.now(UTC),
                            sha256=digest, size=sum(len(v) for v in self.files.values()), label=label)


def memory_workspace(workspace_id: str, settings: Settings) -> MemoryWorkspace:
    """A ``workspace_client_factory`` for tests."""
    return MemoryWorkspace(workspace_id)
