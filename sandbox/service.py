"""WorkspaceService: the whole sandbox API for one workspace, in-process.

It joins a deployment (lifecycle, blocking, run in worker threads), the container server runtime
(exec and files over the unix socket), the snapshot store and an event sink. The Ray actor is
a thin shell around one of these; tests and other hosts can use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from pydantic import ValidationError

from quadracode_ray import metrics, tracing
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    SnapshotInfo,
    StdioOutput,
    StdioSession,
    WorkspaceInvalidRequest,
    WorkspaceUnavailable,
)
from sandbox.container_server import files as container_files
from sandbox.container_server import wire
from sandbox.deployments.base import Deployment
from sandbox.events import EventSink, InMemoryEventSink
from sandbox.models import (
    BackgroundOutput,
    BackgroundProcess,
    ExecOutput,
    ExecRequest,
    SandboxEvent,
    SnapshotDiff,
    WorkspaceInfo,
    WorkspaceSpec,
)
from sandbox.runtime import BytesSink, ServerRuntime
from sandbox.server_bundle import server_digest
from sandbox.snapshots import diff_manifests, snapshot_store, tar_manifest
from sandbox.stdio import StdioSessions

log = logging.getLogger(__name__)
_KILL_SLACK_S = 5.0  # time for the server to kill a timed-out tree and reply, after the grace
MAX_READ_BYTES = 256 << 20
MAX_DOWNLOAD_BYTES = 1 << 30
"""download_tar returns bytes: a bigger tree is refused (snapshot it, or exec a tool that splits it)."""
MAX_SNAPSHOT_BYTES = 64 << 30
"""Snapshots stream to disk; this only bounds what a hostile container can make the host store."""


def _file_info(raw: wire.FileReply) -> FileInfo:
    return FileInfo(path=raw.path, type=raw.type, size=raw.size, mtime=datetime.fromtimestamp(raw.mtime, UTC))


def _process(raw: wire.ProcessReply) -> BackgroundProcess:
    def ts(value):
        return None if value is None else datetime.fromtimestamp(value, UTC)
    return BackgroundProcess(process_id=raw.process_id, command=raw.command, pid=raw.pid,
                             status=raw.status, exit_code=raw.exit_code,
                             started_at=ts(raw.started_at), ended_at=ts(raw.ended_at))


def _check_path(path) -> None:
    try:
        container_files.check_path(path)
    except container_files.OpError as exc:
        raise WorkspaceInvalidRequest(exc.message) from None


def _check_paths(request: wire.Request) -> None:
    """Paths are validated here, at the edge, before anything reaches the workspace."""
    for name in ("path", "src", "dst", "dest", "cwd"):
        value = getattr(request, name, None)
        if value is not None:
            _check_path(value)
    for value in getattr(request, "paths", ()):
        _check_path(value)


def _exec_result(raw: wire.ExecReply) -> ExecResult:
    return ExecResult(**wire.to_dict(raw))


class WorkspaceService:
    def __init__(self, deployment: Deployment, settings: Settings, *, spec: WorkspaceSpec | None = None,
                 events: EventSink | None = None):
        self.deployment = deployment
        self.settings = settings
        self.spec = spec
        self.events = events or InMemoryEventSink()
        self.runtime = ServerRuntime(lambda: deployment.socket_path, self._revive,
                                     secret=lambda: deployment.server_secret,
                                     server_uid=lambda: deployment.server_uid, restart=self._restart_server)
        self.snapshots = snapshot_store(settings, deployment.workspace_id)
        self.stdio = StdioSessions(self.runtime.attach)
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._active = 0
        self._last_activity = time.monotonic()
        self._idle_task: asyncio.Task | None = None

    @property
    def workspace_id(self) -> str:
        return self.deployment.workspace_id

    # --- plumbing ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _op(self, operation: str, *, ensure: bool = True, **detail):
        started = time.perf_counter()
        self._active += 1
        error: BaseException | None = None
        try:
            with tracing.span(f"sandbox {operation}", **{"workspace.id": self.workspace_id,
                                                         "sandbox.operation": operation}):
                if ensure:
                    await self._ensure_ready()
                yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._active -= 1
            self._last_activity = time.monotonic()
            outcome = "ok" if error is None else "error"
            with contextlib.suppress(Exception):  # a metrics backend must never fail an operation
                metrics.histogram("sandbox_operation_seconds", "Duration of workspace sandbox operations.",
                                  ("operation", "outcome")).observe(time.perf_counter() - started,
                                                                    {"operation": operation, "outcome": outcome})
            self._emit(SandboxEvent(
                workspace_id=self.workspace_id, operation=operation,
                duration_ms=(time.perf_counter() - started) * 1000,
                outcome=outcome,
                error=None if error is None else (
                    "cancelled by the caller" if isinstance(error, GeneratorExit | asyncio.CancelledError)
                    else f"{type(error).__name__}: {error}"),
                at=datetime.now(UTC), detail=detail,
            ))

    def _emit(self, event: SandboxEvent) -> None:
        try:
            self.events.emit(event)
        except Exception:  # noqa: BLE001 - reporting must never fail the operation it reports
            log.exception("event sink %r failed", self.events)

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await asyncio.to_thread(self.deployment.ensure, self.spec)
                await self._check_server_version()
                self._ready = True
                self._start_idle_watch()

    async def _check_server_version(self) -> None:
        """A re-attached container server from an older sandbox package (or one this host cannot
        authenticate) is replaced by the current one."""
        try:
            current = (await self.runtime.call(wire.Ping())).version == server_digest()
        except WorkspaceUnavailable:
            current = False
        if not current:
            self.runtime.close()
            await asyncio.to_thread(self.deployment.launch_server)

    async def _restart_server(self, cause: str) -> None:
        log.warning("workspace %s: %s; restarting its container server", self.workspace_id, cause)
        self.runtime.close()
        await asyncio.to_thread(self.deployment.launch_server)

    async def _revive(self) -> None:
        """The container server did not answer: re-create or start the container as needed, relaunch it."""
        await asyncio.to_thread(self.deployment.ensure, self.spec)

    async def _call(self, request: wire.Request, **kwargs):
        _check_paths(request)
        return await self.runtime.call(request, **kwargs)

    def _start_idle_watch(self) -> None:
        if self.settings.sandbox_idle_stop_s > 0 and self._idle_task is None:
            self._idle_task = asyncio.get_running_loop().create_task(self._idle_watch())

    async def _idle_watch(self) -> None:
        limit = self.settings.sandbox_idle_stop_s
        while True:
            await asyncio.sleep(min(max(limit / 4, 0.05), 30.0))
            idle = time.monotonic() - self._last_activity
            if not self._ready or self._active or idle < limit or self.stdio.open_count:
                continue  # (an open stdio session is a server at work, as a background job)
            with contextlib.suppress(Exception):
                if any(p.status == "running" for p in await self._running_processes()):
                    continue  # a background job (a dev server, a build) is work, not idleness
                if time.monotonic() - self._last_activity < limit or self._active:
                    continue
                async with self._op("idle_stop", ensure=False, idle_s=round(idle, 1)):
                    await self._stop()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def ensure(self, spec: WorkspaceSpec | None = None) -> WorkspaceInfo:
        """Create (idempotent) and start the workspace."""
        async with self._op("create", ensure=False):
            async with self._ready_lock:
                await asyncio.to_thread(self.deployment.ensure, spec)
                if spec is not None:
                    self.spec = spec  # only once accepted: a refused spec changes nothing
                self._ready = True
            self._start_idle_watch()
            return await self._info()

    async def start(self) -> WorkspaceInfo:
        async with self._op("start"):
            await asyncio.to_thread(self.deployment.start)
            return await self._info()

    async def _stop(self) -> None:
        await self.stdio.close_all()
        self.runtime.close()
        self._ready = False
        await asyncio.to_thread(self.deployment.stop)

    async def stop(self) -> WorkspaceInfo:
        async with self._op("stop", ensure=False):
            await self._stop()
            return await self._info()

    async def destroy(self, *, remove_volume: bool = False) -> None:
        async with self._op("destroy", ensure=False, remove_volume=remove_volume):
            await self.stdio.close_all()
            self.runtime.close()
            self._ready = False
            await asyncio.to_thread(self.deployment.destroy, remove_volume)

    async def _info(self) -> WorkspaceInfo:
        info = await asyncio.to_thread(self.deployment.info)
        if info.status == "running" and self._ready and info.disk_usage_bytes is None:
            # Without a quota disk (whose file system counts for us), walk the tree.
            with contextlib.suppress(Exception):
                reply = await self._call(wire.DiskUsage(path="."))
                info = info.model_copy(update={"disk_usage_bytes": reply.bytes})
        return info

    async def info(self) -> WorkspaceInfo:
        async with self._op("info", ensure=False):
            return await self._info()

    # --- exec -----------------------------------------------------------------------------------------
    def _exec_request(self, command: str, cwd: str, env: dict[str, str] | None, timeout: float,
                      stream: bool = False) -> wire.Exec:
        try:
            req = ExecRequest(command=command, cwd=cwd, env=env or {}, timeout=timeout)
        except ValidationError as exc:
            raise WorkspaceInvalidRequest(f"invalid exec request: {exc.errors()[0]['msg']}") from None
        _check_path(req.cwd)
        if req.timeout > self.settings.sandbox_max_exec_timeout_s:
            raise WorkspaceInvalidRequest(
                f"timeout {req.timeout} s exceeds the maximum of {self.settings.sandbox_max_exec_timeout_s} s"
            )
        return wire.Exec(command=req.command, cwd=req.cwd, env=req.env, timeout=req.timeout, stream=stream,
                         max_output=self.settings.sandbox_output_limit_bytes, grace=self.settings.sandbox_kill_grace_s)

    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        request = self._exec_request(command, cwd, env, timeout)
        async with self._op("exec", command=command[:200]):
            reply = await self._call(request, timeout=request.timeout + self.settings.sandbox_kill_grace_s + _KILL_SLACK_S,
                                     idempotent=False)
            return _exec_result(reply)

    async def exec_stream(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                          timeout: float = 60.0) -> AsyncIterator[ExecOutput | ExecResult]:
        """Output as it comes (ExecOutput), then the ExecResult (whose stdout/stderr hold it all)."""
        request = self._exec_request(command, cwd, env, timeout, stream=True)
        async with self._op("exec_stream", command=command[:200]):
            async for item in self.runtime.stream(
                request, timeout=request.timeout + self.settings.sandbox_kill_grace_s + _KILL_SLACK_S
            ):
                if isinstance(item, wire.ExecReply):
                    yield _exec_result(item)
                else:
                    yield ExecOutput(stream=item[0], data=item[1].decode("utf-8", "replace"))

    async def start_process(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> BackgroundProcess:
        checked = self._exec_request(command, cwd, env, 1.0)
        request = wire.BgStart(command=checked.command, cwd=checked.cwd, env=checked.env, max_output=checked.max_output)
        async with self._op("process_start", command=command[:200]):
            return _process(await self._call(request, idempotent=False))

    # --- stdio sessions (sandbox/stdio.py) ------------------------------------------------------------
    async def open_stdio(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession:
        checked = self._exec_request(command, cwd, env, 1.0)
        request = wire.Attach(command=checked.command, cwd=checked.cwd, env=checked.env, grace=checked.grace)
        async with self._op("stdio_open", command=command[:200]):
            return await self.stdio.open(request)

    async def write_stdio(self, session_id: str, data: bytes, *, close: bool = False) -> None:
        self._last_activity = time.monotonic()
        await self.stdio.write(session_id, bytes(data), close)

    async def read_stdio(self, session_id: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput:
        self._last_activity = time.monotonic()
        return await self.stdio.read(session_id, max_bytes, timeout)

    async def close_stdio(self, session_id: str) -> None:
        await self.stdio.close(session_id)

    async def poll_process(self, process_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0) -> BackgroundOutput:
        async with self._op("process_poll", process_id=process_id):
            reply = await self._call(wire.BgPoll(process_id=process_id, stdout_offset=stdout_offset,
                                                 stderr_offset=stderr_offset))
            return BackgroundOutput(process=_process(reply.process), stdout=reply.stdout, stderr=reply.stderr,
                                    stdout_offset=reply.stdout_offset, stderr_offset=reply.stderr_offset,
                                    truncated=reply.truncated)

    async def kill_process(self, process_id: str) -> BackgroundProcess:
        async with self._op("process_kill", process_id=process_id):
            return _process(await self._call(wire.BgKill(process_id=process_id, grace=self.settings.sandbox_kill_grace_s)))

    async def list_processes(self) -> list[BackgroundProcess]:
        async with self._op("process_list"):
            return await self._running_processes()

    async def _running_processes(self) -> list[BackgroundProcess]:
        reply = await self._call(wire.BgList())
        return [_process(p) for p in reply.processes]

    # --- files --------------------------------------------------------------------------------------------
    async def read_file(self, path: str) -> bytes:
        async with self._op("read_file", path=path):
            sink = BytesSink(MAX_READ_BYTES, f"file {path!r}")
            await self._call(wire.Read(path=path, max_bytes=MAX_READ_BYTES), sink=sink)
            return bytes(sink.data)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        data = await self.read_file(path)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise WorkspaceInvalidRequest(f"{path!r} is not {encoding} text: {exc}") from None

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None) -> FileInfo:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray):
            raise WorkspaceInvalidRequest(f"write_file needs bytes or str, not {type(data).__name__}")
        async with self._op("write_file", path=path, size=len(data)):
            return _file_info(await self._call(wire.Write(path=path, mode=mode), body=data))

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        async with self._op("list_files", path=path, recursive=recursive):
            reply = await self._call(wire.ListDir(path=path, recursive=recursive))
            return [_file_info(e) for e in reply.entries]

    async def stat(self, path: str) -> FileInfo:
        async with self._op("stat", path=path):
            return _file_info(await self._call(wire.Stat(path=path)))

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        async with self._op("delete", path=path, recursive=recursive):
            await self._call(wire.Delete(path=path, recursive=recursive))

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> FileInfo:
        async with self._op("mkdir", path=path):
            return _file_info(await self._call(wire.Mkdir(path=path, parents=parents, exist_ok=exist_ok)))

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        async with self._op("move", src=src, dst=dst):
            return _file_info(await self._call(wire.Move(src=src, dst=dst, overwrite=overwrite)))

    async def copy(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        """Copy a file or folder; either side may be under /shared (hand-over between workspaces)."""
        async with self._op("copy", src=src, dst=dst):
            return _file_info(await self._call(wire.Copy(src=src, dst=dst, overwrite=overwrite)))

    async def upload_tar(self, data: bytes, dest: str = ".") -> int:
        """Extract a tar under ``dest``; every member is vetted first. Returns the member count."""
        async with self._op("upload", dest=dest, size=len(data)):
            return (await self._call(wire.TarExtract(dest=dest), body=data)).count

    async def download_tar(self, paths: list[str] | None = None) -> bytes:
        async with self._op("download"):
            sink = BytesSink(MAX_DOWNLOAD_BYTES, "download")
            await self._call(wire.TarCreate(paths=list(paths or ["."])), sink=sink)
            return bytes(sink.data)

    # --- snapshots --------------------------------------------------------------------------------------
    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        async with self._op("snapshot", label=label):
            sink = self.snapshots.sink(MAX_SNAPSHOT_BYTES)
            try:
                await self._call(wire.TarCreate(paths=["."]), sink=sink)
                return await asyncio.to_thread(self.snapshots.keep, sink, label)
            finally:
                sink.discard()

    async def list_snapshots(self) -> list[SnapshotInfo]:
        async with self._op("snapshot_list", ensure=False):
            return await asyncio.to_thread(self.snapshots.list)

    async def diff_snapshot(self, snapshot_id: str) -> SnapshotDiff:
        async with self._op("snapshot_diff", snapshot_id=snapshot_id):
            _, path = await asyncio.to_thread(self.snapshots.load, snapshot_id)
            then = await asyncio.to_thread(tar_manifest, path)
            reply = await self._call(wire.Manifest(path="."))
            return diff_manifests(snapshot_id, then, reply.entries)

    async def restore_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        """Make /workspace exactly what it was at the snapshot (files added since are removed)."""
        async with self._op("snapshot_restore", snapshot_id=snapshot_id):
            info, path = await asyncio.to_thread(self.snapshots.load, snapshot_id)
            await self._call(wire.TarExtract(dest=".", clear=True), body=path, idempotent=True)
            return info

    async def delete_snapshot(self, snapshot_id: str) -> None:
        async with self._op("snapshot_delete", ensure=False, snapshot_id=snapshot_id):
            await asyncio.to_thread(self.snapshots.delete, snapshot_id)

    def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        self.runtime.close()
