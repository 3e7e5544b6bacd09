"""How agents get their WorkspaceClient: the sandbox layer's client, with the bus as event sink."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from actors.common import EVENTS, get_actor, load_object
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    SnapshotInfo,
    StdioOutput,
    StdioSession,
    WorkspaceClient,
)

log = logging.getLogger(__name__)


class EventBusSink:
    """The sandbox's EventSink backed by the event bus: ``emit`` returns at once (fire-and-forget)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._handle: Any = None

    def emit(self, event: Any) -> None:
        if self._handle is None:
            self._handle = get_actor(self.settings, EVENTS)
        self._handle.emit.remote(event)

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "_handle": None}


class BusEventReporter:
    """The graphs' EventReporter backed by the event bus: ``report`` returns at once and never
    raises (no bus running, as in a plain Serve app: logged and dropped)."""

    def __init__(self, settings: Settings, sender: str):
        self.settings, self.sender = settings, sender

    def report(self, kind: str, payload: dict[str, Any], *, thread_id: str | None = None) -> None:
        try:
            get_actor(self.settings, EVENTS).publish_event.remote(self.sender, kind, payload, thread_id=thread_id)
        except Exception:  # noqa: BLE001 - reporting must never fail what it reports
            log.warning("event %s from %s not published (no event bus)", kind, self.sender)


async def sandbox_workspace_client(workspace_id: str, settings: Settings) -> WorkspaceClient:
    """The default ``workspace_client_factory``: the workspace's sandbox actor (created if missing)."""
    from sandbox.client import get_workspace

    return await get_workspace(workspace_id, settings, event_sink=EventBusSink(settings))


class LazyWorkspace:
    """A WorkspaceClient that makes the real one (``settings.workspace_client_factory``) on first
    use, so an actor starts at once even when its sandbox container takes seconds to start."""

    def __init__(self, workspace_id: str, settings: Settings):
        self._workspace_id = workspace_id
        self._settings = settings
        self._client: WorkspaceClient | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def workspace_id(self) -> str:
        return self._workspace_id

    @property
    def started(self) -> bool:
        """The real client exists (its sandbox was started)."""
        return self._client is not None

    async def client(self) -> WorkspaceClient:
        if self._client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    factory = load_object(self._settings.workspace_client_factory)
                    made = factory(self._workspace_id, self._settings)
                    self._client = await made if inspect.isawaitable(made) else made
        return self._client

    async def exec(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None,
                   timeout: float = 60.0) -> ExecResult:
        return await (await self.client()).exec(command, cwd=cwd, env=env, timeout=timeout)

    async def read_file(self, path: str) -> bytes:
        return await (await self.client()).read_file(path)

    async def write_file(self, path: str, data: bytes | str) -> FileInfo:
        return await (await self.client()).write_file(path, data)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        return await (await self.client()).list_files(path, recursive=recursive)

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await (await self.client()).delete(path, recursive=recursive)

    async def snapshot(self, label: str | None = None) -> SnapshotInfo:
        return await (await self.client()).snapshot(label)

    # The stdio sessions (MCP servers over stdio run in the workspace through these).
    async def open_stdio(self, command: str, *, cwd: str = ".", env: dict[str, str] | None = None) -> StdioSession:
        return await (await self.client()).open_stdio(command, cwd=cwd, env=env)

    async def write_stdio(self, session_id: str, data: bytes, *, close: bool = False) -> None:
        await (await self.client()).write_stdio(session_id, data, close=close)

    async def read_stdio(self, session_id: str, *, max_bytes: int = 1 << 20, timeout: float = 30.0) -> StdioOutput:
        return await (await self.client()).read_stdio(session_id, max_bytes=max_bytes, timeout=timeout)

    async def close_stdio(self, session_id: str) -> None:
        await (await self.client()).close_stdio(session_id)

    def __getattr__(self, name: str) -> Any:
        # Extra methods of the real client (stat, move, ...) once it exists.
        if name.startswith("_") or self._client is None:
            raise AttributeError(name)
        return getattr(self._client, name)
