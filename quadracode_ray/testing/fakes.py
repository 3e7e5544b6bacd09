"""In-memory implementations of WorkspaceClient, FleetClient and DelegationClient.

``FakeWorkspace.exec`` understands a few commands so scripted demos work without Docker:
``echo``, ``cat``, ``ls``, ``true``, ``false``, ``sleep N`` (really waits, cancellable),
``python3 FILE`` / ``bash FILE`` for files made of ``print(<literal>)`` / ``echo`` lines.
Anything else exits 127, unless a handler was registered with ``on_command``.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import itertools
import posixpath
import shlex
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from quadracode_ray.interfaces import (
    AgentInfo,
    ExecResult,
    FileInfo,
    FleetError,
    PathEscapeError,
    SnapshotInfo,
    TaskInfo,
    TaskResult,
)
from quadracode_ray.interfaces.workspace import (
    DEFAULT_WORKSPACE,
    WorkspaceInvalidRequest,
    WorkspacePathNotFound,
)

CommandHandler = Callable[[str], Awaitable[ExecResult] | ExecResult]


def _now() -> datetime:
    return datetime.now(UTC)


class FakeWorkspace:
    """A WorkspaceClient over a dict of files. Records every command in ``commands``."""

    def __init__(self, workspace_id: str = DEFAULT_WORKSPACE, files: dict[str, bytes | str] | None = None):
        self._id = workspace_id
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []
        self.snapshots: list[SnapshotInfo] = []
        self.exec_started = asyncio.Event()
        """Set whenever a command starts: tests wait on it instead of sleeping."""
        self._handlers: list[tuple[str, CommandHandler]] = []
        for path, data in (files or {}).items():
            self.files[self._norm(path)] = data.encode() if isinstance(data, str) else data

    @property
    def workspace_id(self) -> str:
        return self._id

    def on_command(self, prefix: str, handler: CommandHandler) -> None:
        """Answer commands starting with ``prefix`` with ``handler(command)``."""
        self._handlers.append((prefix, handler))

    @staticmethod
    def _norm(path: str) -> str:
        if path.startswith("/workspace"):
            path = path[len("/workspace"):].lstrip("/") or "."
        if path.startswith("/"):
            raise PathEscapeError(f"path {path!r} is outside the workspace")
        normal = posixpath.normpath(path)
        if normal == ".." or normal.startswith("../"):
            raise PathEscapeError(f"path {path!r} escapes the workspace")
        return normal

    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        self.commands.append(command)
        self.exec_started.set()
        started = time.perf_counter()
        try:
            code, out, err = await asyncio.wait_for(self._run(command), timeout)
            timed_out = False
        except TimeoutError:
            code, out, err, timed_out = None, "", f"timed out after {timeout}s", True
        if isinstance(code, ExecResult):
            return code
        return ExecResult(exit_code=code, stdout=out, stderr=err, timed_out=timed_out,
                          duration_ms=(time.perf_counter() - started) * 1000)

    async def _run(self, command: str):
        for prefix, handler in self._handlers:
            if command.startswith(prefix):
                result = handler(command)
                return (await result if asyncio.iscoroutine(result) else result), "", ""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return 2, "", f"syntax error: {exc}\n"
        if not argv:
            return 0, "", ""
        name, args = argv[0], argv[1:]
        if name == "echo":
            return 0, " ".join(args) + "\n", ""
        if name in ("true", "false"):
            return (0 if name == "true" else 1), "", ""
        if name == "sleep":
            await asyncio.sleep(float(args[0]))
            return 0, "", ""
        if name == "ls":
            return 0, "".join(f"{p}\n" for p in sorted(self.files)), ""
        if name == "cat":
            try:
                return 0, "".join(self.files[self._norm(a)].decode() for a in args), ""
            except KeyError as exc:
                return 1, "", f"cat: {exc.args[0]}: No such file or directory\n"
        if name in ("python", "python3", "bash", "sh") and args:
            return self._interpret(name, args[0])
        return 127, "", f"{name}: command not found (FakeWorkspace)\n"

    def _interpret(self, runner: str, path: str):
        try:
            source = self.files[self._norm(path)].decode()
        except KeyError:
            return 2, "", f"{runner}: can't open file {path!r}\n"
        out = []
        for line in source.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if runner.startswith("python") and line.startswith("print(") and line.endswith(")"):
                    out.append(str(ast.literal_eval(line[6:-1] or "''")))
                elif not runner.startswith("python") and line.startswith("echo "):
                    out.append(line[5:])
                else:
                    raise ValueError(line)
            except (ValueError, SyntaxError):
                return 1, "\n".join(out), f"FakeWorkspace cannot interpret: {line}\n"
        return 0, "".join(f"{o}\n" for o in out), ""

    async def read_file(self, path: str) -> bytes:
        key = self._norm(path)
        if key not in self.files:
            raise WorkspacePathNotFound(f"no such file: {path}")
        return self.files[key]

    async def write_file(self, path: str, data: bytes | str) -> FileInfo:
        key = self._norm(path)
        self.files[key] = data.encode() if isinstance(data, str) else bytes(data)
        return FileInfo(path=key, type="file", size=len(self.files[key]), mtime=_now())

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        base = self._norm(path)
        prefix = "" if base == "." else base + "/"
        seen: dict[str, FileInfo] = {}
        for key, data in sorted(self.files.items()):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if recursive or "/" not in rest:
                seen[key] = FileInfo(path=key, type="file", size=len(data), mtime=_now())
            else:
                folder = prefix + rest.split("/", 1)[0]
                seen.setdefault(folder, FileInfo(path=folder, type="dir", size=0, mtime=_now()))
        return list(seen.values())

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        key = self._norm(path)
        inside = [k for k in self.files if k.startswith(key + "/")]
        if inside and not recursive:
            raise WorkspaceInvalidRequest(f"{path} is a folder that is not empty; pass recursive=True")
        if key not in self.files and not inside:
            raise WorkspacePathNotFound(f"no such file: {path}")
        for k in [key, *inside]:
            self.files.pop(k, None)

    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(self.files.items()))).hexdigest()
        info = SnapshotInfo(snapshot_id=f"snap-{len(self.snapshots) + 1}", workspace_id=self._id,
                            created_at=_now(), sha256=digest, size=sum(map(len, self.files.values())), label=label)
        self.snapshots.append(info)
        return info


def fake_workspace(workspace_id: str, settings: object = None) -> FakeWorkspace:
    """A ``workspace_client_factory`` (``quadracode_ray.testing.fakes:fake_workspace``): actors
    of a test installation get an in-memory workspace each instead of a sandbox."""
    return FakeWorkspace(workspace_id)


class FakeFleet:
    """A FleetClient with a cap on live agents and hotpath agents that need ``force``."""

    def __init__(self, *, max_agents: int = 8, agents: list[AgentInfo] | None = None):
        self.max_agents = max_agents
        self.agents: dict[str, AgentInfo] = {a.agent_id: a for a in agents or []}
        self.killed: list[str] = []
        self._ids = itertools.count(1)

    async def list_agents(self, *, capability: str | None = None, kind: str | None = None) -> list[AgentInfo]:
        return [a for a in self.agents.values()
                if (capability is None or capability in a.capabilities) and (kind is None or a.kind == kind)]

    async def spawn_agent(self, *, kind: str = "coder", capabilities: list[str] | None = None,
                          workspace_id: str = DEFAULT_WORKSPACE) -> AgentInfo:
        if len(self.agents) >= self.max_agents:
            raise FleetError(f"agent cap reached ({self.max_agents} alive)")
        agent = AgentInfo(agent_id=f"{kind}-{next(self._ids)}", kind=kind, capabilities=capabilities or [kind],
                          workspace_id=workspace_id, last_heartbeat_age_s=0.0)
        self.agents[agent.agent_id] = agent
        return agent

    async def kill_agent(self, agent_id: str, *, force: bool = False) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise FleetError(f"no agent {agent_id!r}")
        if agent.hotpath and not force:
            raise FleetError(f"agent {agent_id!r} is hotpath; kill it with force=True")
        del self.agents[agent_id]
        self.killed.append(agent_id)


class FakeDelegation:
    """A DelegationClient that records tasks; tests finish them with ``complete``."""

    def __init__(self, fleet: FakeFleet | None = None):
        self.fleet = fleet
        self.tasks: dict[str, TaskInfo] = {}
        self.configs: dict[str, dict[str, Any] | None] = {}
        """The assistant config each task carried (``delegate(config=...)``)."""
        self._ids = itertools.count(1)

    async def delegate(self, instruction: str, *, parent_thread_id: str, agent_id: str | None = None,
                       capability: str | None = None, config: dict[str, Any] | None = None) -> TaskInfo:
        if not instruction.strip():
            raise FleetError("instruction must not be empty")
        if agent_id is not None and self.fleet is not None and agent_id not in self.fleet.agents:
            raise FleetError(f"no agent {agent_id!r}")
        task = TaskInfo(task_id=f"task-{next(self._ids)}", agent_id=agent_id, parent_thread_id=parent_thread_id,
                        instruction=instruction, status="pending", created_at=_now())
        self.tasks[task.task_id] = task
        self.configs[task.task_id] = config
        return task

    async def task_status(self, task_id: str) -> TaskInfo:
        if task_id not in self.tasks:
            raise FleetError(f"no task {task_id!r}")
        return self.tasks[task_id]

    async def cancel_task(self, task_id: str) -> TaskInfo:
        task = await self.task_status(task_id)
        if task.status in ("pending", "running"):
            task = self.tasks[task_id] = task.model_copy(update={"status": "cancelled"})
        return task

    def complete(self, task_id: str, output: str = "", *, status: str = "succeeded", error: str | None = None,
                 artifacts: list[str] | None = None) -> TaskResult:
        """Mark a task done and return the TaskResult an actor would deliver to the thread."""
        task = self.tasks[task_id]
        self.tasks[task_id] = task.model_copy(update={"status": status})
        return TaskResult(task_id=task_id, agent_id=task.agent_id, status=status, output=output, error=error,
                          artifacts=artifacts or [])
