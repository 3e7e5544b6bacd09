"""What makes an actor a run host: the calls the API makes on it, and a run pushed to another
host through Ray.

The host itself (``runs.host.RunHost``) is plain asyncio; an actor embeds one as ``run_host``
and mixes in ``RunHostCalls``. The API reaches a run's host by the actor name in
``qr_runs.executor``.
"""

from __future__ import annotations

from typing import Any

import ray

from quadracode_ray import NAMESPACE
from runs.host import RELAY_COALESCE_S, RunHost


class RayForward:
    """``Forward`` through Ray: ``submit_run`` on the actor named like the host (fire and forget)."""

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}

    def __call__(self, target: str, run_id: str) -> bool:
        try:
            handle = self.handles.get(target) or ray.get_actor(target, namespace=NAMESPACE)
        except ValueError:  # no such actor (any more)
            return False
        self.handles[target] = handle
        handle.submit_run.remote(run_id)
        return True


class RunHostCalls:
    """The calls every actor hosting API runs answers (mixed into the actor classes): the API
    reaches a run's host by the name in ``qr_runs.executor`` and calls these."""

    run_host: RunHost

    async def _run_host_ready(self) -> RunHost:
        """The host, once the actor can serve it (an actor still starting overrides this)."""
        return self.run_host

    async def submit_run(self, run_id: str, run: dict | None = None) -> None:
        """Start a run queued for this actor (``run``: as ``RunHost.submit``)."""
        await (await self._run_host_ready()).submit(run_id, run)

    async def cancel_run(self, run_id: str, action: str = "interrupt") -> bool:
        """Stop a run this actor holds. Returns False when it is neither running nor pending."""
        return await (await self._run_host_ready()).cancel(run_id, action)

    @ray.method(max_task_retries=0)  # after a host's restart the reader follows the run's new attempt itself
    async def run_events(self, run_id: str, after: int = -1, start: bool = False, run: dict | None = None):
        """Streaming generator: batches of (seq, event, data) with seq > after, until the run ends.
        ``start``/``run``: the run was just queued for this host (as ``RunHost.wait``). Events
        are batched (``RELAY_COALESCE_S``): each batch is a message to the reader."""
        host = await self._run_host_ready()
        async for items in host.events(run_id, after, start=start, run=run, coalesce_s=RELAY_COALESCE_S):
            yield items

    @ray.method(max_task_retries=0)
    async def wait_run(self, run_id: str, start: bool = False, run: dict | None = None) -> tuple[str, bytes | None]:
        """(status, output JSON or None) once the run ended: runs/wait in one call, no stream."""
        return await (await self._run_host_ready()).wait(run_id, start=start, run=run)

    async def run_stats(self) -> dict[str, Any]:
        return await (await self._run_host_ready()).stats()
