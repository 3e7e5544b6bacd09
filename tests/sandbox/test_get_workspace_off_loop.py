"""get_workspace finds (or creates) the workspace's actor off the caller's event loop: that lookup
asks the GCS and reads the workspace's node from Postgres, blocking calls that would stall every
other request of an API replica or every other task of an agent sharing the loop. Fakes for the
actor lookup and its client (pure logic; tests/sandbox/test_lifecycle.py runs the real ones)."""

from __future__ import annotations

import asyncio
import threading

from quadracode_ray.config import Settings
from sandbox import client as sandbox_client


async def test_get_workspace_looks_its_actor_up_off_the_event_loop(monkeypatch):
    loop_ran = threading.Event()
    handle = object()

    def blocking_lookup(workspace_id, settings, **options):
        # Returns only once the event loop has run something meanwhile: on the loop's own thread
        # it would wait out the deadline instead, and fail.
        assert loop_ran.wait(10), "the event loop was blocked while the workspace's actor was looked up"
        return handle

    async def ensure(self, spec):
        return None

    monkeypatch.setattr(sandbox_client, "workspace_actor", blocking_lookup)
    monkeypatch.setattr(sandbox_client.WorkspaceSandboxClient, "ensure", ensure)

    async def meanwhile():
        loop_ran.set()

    other = asyncio.create_task(meanwhile())
    client = await sandbox_client.get_workspace("ws-1", Settings(_env_file=None))
    await other
    assert client._handle is handle and client.workspace_id == "ws-1"
