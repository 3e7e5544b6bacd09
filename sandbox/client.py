"""Workspace clients on top of WorkspaceSandbox actors — what the actor layer hands to graphs.

``await get_workspace("proj-1", settings)`` gets or creates the actor ``workspace:proj-1`` and
its container, and returns a ``WorkspaceSandboxClient``, which implements
``quadracode_ray.interfaces.workspace.WorkspaceClient`` (plus the rest of the sandbox API).
Errors raised in the actor arrive as the same typed exceptions (PathEscapeError, ...), and a
dead or restarting actor as WorkspaceUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import ray
from docker.errors import DockerException
from ray.exceptions import ActorUnschedulableError, GetTimeoutError, RayActorError, RayTaskError

from quadracode_ray import NAMESPACE, tracing
from quadracode_ray.config import Settings, load_settings
from quadracode_ray.interfaces.workspace import (
    DEFAULT_WORKSPACE,
    ExecResult,
    FileInfo,
    SnapshotInfo,
    SnapshotNotFound,
    StdioOutput,
    StdioSession,
    WorkspaceConflict,
    WorkspaceNotFound,
    WorkspaceUnavailable,
)
from sandbox.actor import WorkspaceSandbox, actor_name
from sandbox.events import EventSink
from sandbox.models import (
    BackgroundOutput,
    BackgroundProcess,
    ExecOutput,
    SandboxActorInfo,
    SandboxEvent,
    SnapshotDiff,
    WorkspaceInfo,
    WorkspaceSpec,
    validate_workspace_id,
)
from sandbox.placement import node_is_alive, placement_options, placement_records, unavailable
from sandbox.snapshots import SnapshotStore, snapshot_store


def _translate(exc: BaseException, workspace_id: str) -> BaseException:
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DockerException):
            # The engine refused or lost the container under the actor (the workspace removed
            # meanwhile, the engine restarting): a typed error callers can retry, not a crash.
            return WorkspaceUnavailable(f"workspace {workspace_id!r}: its container is not usable now "
                                        f"({type(cause).__name__}: {str(cause)[:200]})")
        if isinstance(cause, BaseException):
            return cause
    if isinstance(exc, RayActorError | GetTimeoutError | ActorUnschedulableError):
        # Unschedulable: its node (node affinity, sandbox/placement.py) is gone.
        return WorkspaceUnavailable(f"workspace {workspace_id!r} actor is unavailable (restarting, dead or its "
                                    f"node gone): {exc}")
    return exc


def _node_gone(workspace_id: str, settings: Settings | None) -> WorkspaceUnavailable | None:
    """The error naming the workspace's recorded node when that node has left the cluster."""
    try:
        records = placement_records(settings) if settings is not None else None
        record = records.get(workspace_id) if records else None
        return unavailable(workspace_id, record) if record and not node_is_alive(record.node_id) else None
    except Exception:  # noqa: BLE001 - only a better message: the actor's own error still stands
        return None


class WorkspaceSandboxClient:
    """A WorkspaceClient backed by a WorkspaceSandbox actor handle. Picklable: pass it to
    other actors freely. With ``settings``, an operation on a workspace whose node is gone
    fails with a WorkspaceUnavailable naming that node."""

    def __init__(self, handle: Any, workspace_id: str, settings: Settings | None = None):
        self._handle = handle
        self._workspace_id = workspace_id
        self._settings = settings

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, RayActorError | ActorUnschedulableError):
            return _node_gone(self._workspace_id, self._settings) or _translate(exc, self._workspace_id)
        return _translate(exc, self._workspace_id)

    @property
    def workspace_id(self) -> str:
        return self._workspace_id

    @property
    def handle(self) -> Any:
        return self._handle

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        carried = tracing.carrier()  # empty (and so a plain call) unless tracing is on
        if carried:
            ref = self._handle.traced.remote(carried, method, *args, **kwargs)
        else:
            ref = getattr(self._handle, method).remote(*args, **kwargs)
        try:
            return await ref
        except (RayTaskError, RayActorError, ActorUnschedulableError) as exc:
            raise self._error(exc) from None
        except asyncio.CancelledError:
            # Whoever awaited gave up (an emergency stop, a cancelled run): cancel the actor's
            # coroutine too, which closes its container server connection, which kills the command.
            with contextlib.suppress(Exception):
                ray.cancel(ref)
            raise

    # --- lifecycle -------------------------------------------------------------------------------
    async def ensure(self, spec: WorkspaceSpec | None = None) -> WorkspaceInfo:
        return await self._call("ensure", spec)

    async def start(self) -> WorkspaceInfo:
        return await self._call("start")

    async def stop(self) -> WorkspaceInfo:
        return await self._call("stop")

    async def destroy(self, *, remove_volume: bool = False) -> None:
        await self._call("destroy", remove_volume)

    async def info(self) -> WorkspaceInfo:
        return await self._call("info")

    async def ping(self) -> SandboxActorInfo:
        """The actor's workspace id, process and Ray worker ids (both change when the actor restarts)
        and Ray node id."""
        return await self._call("ping")

    async def recent_events(self, operation: str | None = None) -> list[SandboxEvent]:
        return await self._call("recent_events", operation)

    # --- exec ------------------------------------------------------------------------------------------
    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        return await self._call("exec", command, cwd, env, timeout)

    async def exec_stream(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                          timeout: float = 60.0) -> AsyncIterator[ExecOutput | ExecResult]:
        """Yields ExecOutput pieces as the command writes them, then the final ExecResult.
        Leaving the loop early cancels the stream, which kills the command."""
        carried = tracing.carrier()  # as in _call: the command's spans continue the caller's trace
        generator = self._handle.traced_exec_stream.remote(carried, command, cwd, env, timeout) if carried \
            else self._handle.exec_stream.remote(command, cwd, env, timeout)
        finished = False
        try:
            async for ref in generator:
                item = await ref
                finished = isinstance(item, ExecResult)
                yield item
        except (RayTaskError, RayActorError, ActorUnschedulableError) as exc:
            finished = True
            raise self._error(exc) from None
        finally:
            if not finished:
                ray.cancel(generator)

    async def start_process(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> BackgroundProcess:
        return await self._call("start_process", command, cwd, env)

    async def poll_process(self, process_id: str, *, stdout_offset: int = 0, stderr_offset: int = 0) -> BackgroundOutput:
        return await self._call("poll_process", process_id, stdout_offset, stderr_offset)

    async def kill_process(self, process_id: str) -> BackgroundProcess:
        return await self._call("kill_process", process_id)

    async def list_processes(self) -> list[BackgroundProcess]:
        return await self._call("list_processes")

    async def open_stdio(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession:
        return await self._call("open_stdio", command, cwd, env)

    async def write_stdio(self, session_id: str, data: bytes, *, close: bool = False) -> None:
        await self._call("write_stdio", session_id, data, close)

    async def read_stdio(self, session_id: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput:
        return await self._call("read_stdio", session_id, max_bytes, timeout)

    async def close_stdio(self, session_id: str) -> None:
        await self._call("close_stdio", session_id)

    # --- files ---------------------------------------------------------------------------------------------
    async def read_file(self, path: str) -> bytes:
        return await self._call("read_file", path)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return await self._call("read_text", path, encoding)

    async def write_file(self, path: str, data: bytes | str, *, mode: int | None = None) -> FileInfo:
        return await self._call("write_file", path, data, mode)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        return await self._call("list_files", path, recursive)

    async def stat(self, path: str) -> FileInfo:
        return await self._call("stat", path)

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await self._call("delete", path, recursive)

    async def mkdir(self, path: str, *, parents: bool = True, exist_ok: bool = True) -> FileInfo:
        return await self._call("mkdir", path, parents, exist_ok)

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        return await self._call("move", src, dst, overwrite)

    async def copy(self, src: str, dst: str, *, overwrite: bool = False) -> FileInfo:
        return await self._call("copy", src, dst, overwrite)

    async def upload_tar(self, data: bytes, dest: str = ".") -> int:
        return await self._call("upload_tar", data, dest)

    async def download_tar(self, paths: list[str] | None = None) -> bytes:
        return await self._call("download_tar", paths)

    # --- snapshots ------------------------------------------------------------------------------------------
    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        return await self._call("snapshot", label)

    async def list_snapshots(self) -> list[SnapshotInfo]:
        return await self._call("list_snapshots")

    async def diff_snapshot(self, snapshot_id: str) -> SnapshotDiff:
        return await self._call("diff_snapshot", snapshot_id)

    async def restore_snapshot(self, snapshot_id: str) -> SnapshotInfo:
        return await self._call("restore_snapshot", snapshot_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self._call("delete_snapshot", snapshot_id)


def workspace_actor(workspace_id: str, settings: Settings, *, spec: WorkspaceSpec | None = None,
                    event_sink: EventSink | None = None, detached: bool = True) -> Any:
    """The handle of actor ``<prefix>workspace:<id>``, created if missing (race-free: get_if_exists)
    on the node that holds the workspace (sandbox/placement.py); WorkspaceUnavailable when that
    node is gone."""
    validate_workspace_id(workspace_id)
    name = actor_name(workspace_id, settings)
    with contextlib.suppress(ValueError):
        return ray.get_actor(name, namespace=NAMESPACE)  # alive or restarting: where it is placed already
    options: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"  # workspaces outlive whoever asked for them first
    options.update(placement_options(workspace_id, settings))
    return WorkspaceSandbox.options(**options).remote(workspace_id, settings, spec, event_sink)


async def get_workspace(workspace_id: str = DEFAULT_WORKSPACE, settings: Settings | None = None, *,
                        spec: WorkspaceSpec | None = None, event_sink: EventSink | None = None,
                        detached: bool = True) -> WorkspaceSandboxClient:
    """Get or create the workspace (actor and container, started) and return its client.

    Raises WorkspaceInvalidRequest for a bad id, WorkspaceConflict when ``spec`` differs from the
    existing workspace's, WorkspaceUnavailable when Docker cannot run it."""
    settings = settings or load_settings()
    # Finding or creating the actor asks the GCS and reads the workspace's node from Postgres
    # (blocking calls): off the caller's event loop (an agent's or the API replica's).
    handle = await asyncio.to_thread(workspace_actor, workspace_id, settings, spec=spec, event_sink=event_sink,
                                     detached=detached)
    client = WorkspaceSandboxClient(handle, workspace_id, settings)
    await client.ensure(spec)
    return client


def existing_workspace(workspace_id: str, settings: Settings | None = None) -> WorkspaceSandboxClient:
    """The client of a workspace whose actor already runs; WorkspaceNotFound otherwise."""
    validate_workspace_id(workspace_id)
    settings = settings or load_settings()
    name = actor_name(workspace_id, settings)
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise WorkspaceNotFound(f"no workspace actor {name!r} in namespace {NAMESPACE!r}") from None
    return WorkspaceSandboxClient(handle, workspace_id, settings)


def _let_go(workspace_id: str, settings: Settings, records: Any) -> None:
    """Remove the lost workspace's actor (left dead or unschedulable by its node's loss) and record."""
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(actor_name(workspace_id, settings), namespace=NAMESPACE), no_restart=True)
    if records is not None:
        records.forget(workspace_id)


def _chosen_snapshot(store: SnapshotStore, snapshot_id: str | None) -> str:
    if snapshot_id is not None:
        return store.info(snapshot_id).snapshot_id
    snapshots = store.list()
    if not snapshots:
        raise SnapshotNotFound(f"workspace {store.workspace_id!r} has no snapshot to restore")
    return snapshots[-1].snapshot_id


async def restore_workspace(workspace_id: str, settings: Settings | None = None, *,
                            snapshot_id: str | None = None, spec: WorkspaceSpec | None = None,
                            event_sink: EventSink | None = None) -> tuple[WorkspaceSandboxClient, SnapshotInfo]:
    """Bring back a workspace whose node is gone: a new container on a live node offering
    ``workspace``, filled from ``snapshot_id`` (default: its latest snapshot). Snapshots must be
    where every node reads them: in Postgres (``sandbox_snapshot_store``, the default), or in a
    folder every node mounts (``sandbox_snapshot_dir``).

    WorkspaceConflict when the workspace's node is alive (restore in place with
    ``restore_snapshot``), SnapshotNotFound when it has no snapshot to restore (with snapshots in
    Postgres, found out before anything changes)."""
    settings = settings or load_settings()
    validate_workspace_id(workspace_id)
    # The records, the GCS and the snapshot rows are blocking calls: off the caller's event loop
    # (an API replica's requests share it).
    records = placement_records(settings)
    record = await asyncio.to_thread(records.get, workspace_id) if records else None
    if record is not None and await asyncio.to_thread(node_is_alive, record.node_id):
        raise WorkspaceConflict(
            f"workspace {workspace_id!r} is on live node {record.node_id} ({record.node_ip}): "
            f"restore its snapshots in place with restore_snapshot")
    store = snapshot_store(settings, workspace_id)
    if store.rows is not None:  # readable from here, as from every node
        snapshot_id = await asyncio.to_thread(_chosen_snapshot, store, snapshot_id)
    await asyncio.to_thread(_let_go, workspace_id, settings, records)
    client = await get_workspace(workspace_id, settings, spec=spec, event_sink=event_sink)
    try:
        if snapshot_id is None:
            snapshots = await client.list_snapshots()
            if not snapshots:
                raise SnapshotNotFound(f"workspace {workspace_id!r} has no snapshot to restore")
            snapshot_id = snapshots[-1].snapshot_id
        return client, await client.restore_snapshot(snapshot_id)
    except BaseException:
        if records is not None and record is not None:
            # A failed restore changes nothing: the new workspace (on another node than the lost
            # one, so a fresh container) goes, and the lost node stays recorded (the workspace is
            # still WorkspaceUnavailable, naming it).
            with contextlib.suppress(Exception):
                await client.destroy(remove_volume=True)
            with contextlib.suppress(Exception):
                ray.kill(client.handle, no_restart=True)
            records.move(workspace_id, record)
        raise


async def hand_over(source: WorkspaceSandboxClient, src: str, target: WorkspaceSandboxClient, dest: str = ".") -> int:
    """Copy ``src`` (a file or folder) of one workspace into ``dest`` of another, through their
    actors, wherever their nodes are (``/shared`` is one volume per node, not per cluster).
    Returns the number of entries written."""
    return await target.upload_tar(await source.download_tar([src]), dest)
