"""How agents get their WorkspaceClient: the sandbox layer's client, with the bus as event sink."""

from __future__ import annotations

from typing import Any

from actors.common import EVENTS, get_actor
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceClient


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


async def sandbox_workspace_client(workspace_id: str, settings: Settings) -> WorkspaceClient:
    """The default ``workspace_client_factory``: the workspace's sandbox actor (created if missing)."""
    from sandbox.client import get_workspace

    return await get_workspace(workspace_id, settings, event_sink=EventBusSink(settings))
