"""The WorkspaceSandbox Ray actor: one per workspace, named ``workspace:<id>`` in "quadracode".

A thin shell around a WorkspaceService. It is async (Docker calls run in worker threads, so
the event loop keeps serving other calls) and restartable without limit: a restarted actor
finds its container again by label, and the files in the volume are still there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import ray

from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    SnapshotInfo,
    StdioOutput,
    StdioSession,
)
from quadracode_ray.ray_metrics import install_ray_metrics
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.events import EventSink, FanOutSink, InMemoryEventSink
from sandbox.models import (
    BackgroundOutput,
    BackgroundProcess,
    ExecOutput,
    SandboxActorInfo,
    SandboxEvent,
    SnapshotDiff,
    WorkspaceInfo,
    WorkspaceSpec,
)
from sandbox.placement import claim_current_node, placement_records
from sandbox.service import WorkspaceService
from sandbox.snapshot_copies import drop_copies
from sandbox.snapshots import drop_unrecorded_copies

ACTOR_NAME_PREFIX = "workspace:"
log = logging.getLogger(__name__)


def actor_name(workspace_id: str, settings: Settings) -> str:
    """``<actor_name_prefix>workspace:<id>``: installations sharing a Ray cluster keep apart."""
    return settings.actor_name_prefix + ACTOR_NAME_PREFIX + workspace_id


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class WorkspaceSandbox:
    def __init__(self, workspace_id: str, settings: Settings, spec: WorkspaceSpec | None = None,
                 event_sink: EventSink | None = None):
        claim_current_node(workspace_id, settings)  # never an empty container on the wrong node
        install_ray_metrics(settings.actor_name_prefix)  # exec and file operation durations reach /metrics and the dashboard
        tracing.configure_tracing(settings, "sandbox")
        self._recent = InMemoryEventSink()
        deployment = DockerDeployment(workspace_id, DockerDeploymentConfig.from_settings(settings))
        self.service = WorkspaceService(deployment, settings, spec=spec, events=FanOutSink(self._recent, event_sink))
        try:  # copies of snapshots deleted while this node was away (snapshot_copies.py)
            drop_unrecorded_copies(settings)
        except Exception:  # noqa: BLE001 - a cache to tidy, never a reason for the workspace not to start
            log.warning("stale snapshot copies not removed on this node", exc_info=True)

    async def traced(self, carried: dict[str, str], method: str, *args: Any, **kwargs: Any) -> Any:
        """``method`` called inside the caller's trace (``carried`` from ``tracing.carrier()``);
        the client calls this instead of ``method`` only when tracing is on and a span is current."""
        if method.startswith("_") or method in ("traced", "exec_stream", "traced_exec_stream"):
            raise ValueError(f"{method!r} cannot be called through traced")
        with tracing.attached(carried):
            result = getattr(self, method)(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

    # lifecycle
    async def ensure(self, spec: WorkspaceSpec | None = None) -> WorkspaceInfo:
        return await self.service.ensure(spec)

    async def start(self) -> WorkspaceInfo:
        return await self.service.start()

    async def stop(self) -> WorkspaceInfo:
        return await self.service.stop()

    async def destroy(self, remove_volume: bool = False) -> None:
        await self.service.destroy(remove_volume=remove_volume)
        records = placement_records(self.service.settings)
        if remove_volume and records is not None:  # nothing is left on this node to come back to
            await asyncio.to_thread(records.forget, self.service.workspace_id)

    async def info(self) -> WorkspaceInfo:
        return await self.service.info()

    def ping(self) -> SandboxActorInfo:
        """Cheap liveness probe (answered while Docker calls are in flight)."""
        context = ray.get_runtime_context()
        return SandboxActorInfo(workspace_id=self.service.workspace_id, pid=os.getpid(),
                                worker_id=context.get_worker_id(), node_id=context.get_node_id())

    def recent_events(self, operation: str | None = None) -> list[SandboxEvent]:
        return self._recent.events(operation)

    # exec
    async def exec(self, command: str, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        return await self.service.exec(command, cwd=cwd, env=env, timeout=timeout)

    @ray.method(num_returns="streaming")
    async def exec_stream(self, command: str, cwd: str = ".", env: dict[str, str] | None = None,
                          timeout: float = 60.0) -> AsyncIterator[ExecOutput | ExecResult]:
        async for item in self.service.exec_stream(command, cwd=cwd, env=env, timeout=timeout):
            yield item

    @ray.method(num_returns="streaming")
    async def traced_exec_stream(self, carried: dict[str, str], command: str, cwd: str = ".",
                                 env: dict[str, str] | None = None,
                                 timeout: float = 60.0) -> AsyncIterator[ExecOutput | ExecResult]:
        """``exec_stream`` inside the caller's trace (``traced`` returns one value, so cannot stream)."""
        with tracing.attached(carried):
            async for item in self.service.exec_stream(command, cwd=cwd, env=env, timeout=timeout):
                yield item

    async def start_process(self, command: str, cwd: str = ".", env: dict[str, str] | None = None) -> BackgroundProcess:
        return await self.service.start_process(command, cwd=cwd, env=env)

    async def poll_process(self, process_id: str, stdout_offset: int = 0, stderr_offset: int = 0) -> BackgroundOutput:
        return await self.service.poll_process(process_id, stdout_offset=stdout_offset, stderr_offset=stderr_offset)

    async def kill_process(self, process_id: str) -> BackgroundProcess:
        return await self.service.kill_process(process_id)

    async def list_processes(self) -> list[BackgroundProcess]:
        return await self.service.list_processes()

    async def open_stdio(self, command: str, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession:
        return await self.service.open_stdio(command, cwd=cwd, env=env)

    async def write_stdio(self, session_id: str, data: bytes, close: bool = False) -> None:
        await self.service.write_stdio(session_id, data, close=close)

    async def read_stdio(self, session_id: str, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput:
        return await self.service.read_stdio(session_id, max_bytes=max_bytes, timeout=timeout)

    async def close_stdio(self, session_id: str) -> None:
        await self.service.close_stdio(session_id)

    # files
    async def read_file(self, path: str) -> bytes:
        return await self.service.read_file(path)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return await self.service.read_text(path, encoding)

    async def write_file(self, path: str, data: bytes | str, mode: int | None = None) -> FileInfo:
        return await self.service.write_file(path, data, mode=mode)

    async def list_files(self, path: str = ".", recursive: bool = False) -> list[FileInfo]:
        return await self.service.list_files(path, recursive=recursive)

    async def stat(self, path: str) -> FileInfo:
        return await self.service.stat(path)

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self.service.delete(path, recursive=recursive)

    async def mkdir(self, path: str, parents: bool = True, exist_ok: bool = True) -> FileInfo:
        return await self.service.mkdir(path, parents=parents, exist_ok=exist_ok)

    async def move(self, src: str, dst: str, overwrite: bool = False) -> FileInfo:
        return await self.service.move(src, dst, overwrite=overwrite)

    async def copy(self, src: str, dst: str, overwrite: bool = False) -> FileInfo:
        return await self.service.copy(src, dst, overwrite=overwrite)

    async def upload_tar(self, data: bytes, dest: str = ".") -> int:
        return await self.service.upload_tar(data, dest)

    async def download_tar(self, paths: list[str] | None = None) -> bytes:
        return await self.service.download_tar(paths)

    # snapshots
    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        return await self.service.snapshot(label)

    async def list_snapshots(self) -> list[SnapshotInfo]:
        return await self.service.list_snapshots()

    async def diff_snapshot(self, snapshot_id: str) -> SnapshotDiff:
        return await self.service.diff_snapshot(snapshot_id)

    async def restore_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        return await self.service.restore_snapshot(snapshot_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self.service.delete_snapshot(snapshot_id)
        if self.service.snapshots.rows is not None:  # other nodes' copies of it (snapshot_copies.py)
            await asyncio.to_thread(drop_copies, self.service.settings, self.service.workspace_id, snapshot_id)
