"""Publishing envelopes to the event bus from an actor: off the delivery path, retried, bounded.

An actor publishes every envelope it accepts (and its own events) without waiting for the bus.
``put`` appends to a buffer and schedules one flush for the current turn of the event loop,
so the bus call leaves as soon as the caller yields (as early as a direct call would) while
everything put in the same turn shares it: one ``publish_many`` per batch, and batches grow
with the load. Each batch is awaited in a task of its own and retried until the bus takes it
(the bus restarts, ``max_restarts=-1``): a bus that was down loses nothing this process had
put. What the orchestrator accepted is in ``qr_deliveries`` too, restored by the bus's
``reconcile`` if the orchestrator dies before its batch reaches the bus.

Bounded: ``full`` (``max_buffered`` envelopes put but not yet taken by the bus) tells an inbox
to refuse new deliveries, so the sender retries later; ``put`` beyond twice that raises, so a
bus that stays down slows the fabric instead of growing its memory.
"""

from __future__ import annotations

import asyncio
import logging

from actors.common import EVENTS, HandleCache, spawn_background
from quadracode_ray.envelope import Envelope

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_BUFFERED = 10_000
RETRY_CAP_S = 5.0


class PublishBacklogFull(RuntimeError):
    """The event bus has not taken this actor's envelopes for a while; refusing more until it does."""


class EventPublisher:
    def __init__(self, handles: HandleCache, *, owner: str, max_buffered: int = MAX_BUFFERED):
        self.handles = handles
        self.owner = owner
        self.max_buffered = max_buffered
        self._buffer: list[Envelope] = []
        self._unconfirmed = 0
        """Envelopes put and not yet taken by the bus (buffered or in a batch on its way)."""
        self._flush_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task] = set()
        self.published_total = 0
        self.batches_total = 0
        self.failures_total = 0

    @property
    def full(self) -> bool:
        return self._unconfirmed >= self.max_buffered

    def put(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for the bus; returns at once."""
        if self._unconfirmed >= 2 * self.max_buffered:
            raise PublishBacklogFull(f"{self.owner}: {self._unconfirmed} envelopes wait for the event bus")
        self._buffer.append(envelope)
        self._unconfirmed += 1
        self._idle.clear()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._buffer:
            batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            spawn_background(self._tasks, self._send(batch), name=f"publish:{self.owner}")

    async def _send(self, batch: list[Envelope]) -> None:
        delay = 0.05
        try:
            while True:
                try:
                    await self.handles.get(EVENTS).publish_many.remote(batch)
                    break
                except Exception as exc:  # noqa: BLE001 - keep the batch; the bus comes back (max_restarts=-1)
                    self.failures_total += 1
                    self.handles.forget(EVENTS)
                    log.warning("%s: publishing %d envelopes failed, retrying in %.2f s: %s", self.owner,
                                len(batch), delay, exc)
                    # A retry delay while the bus restarts, not synchronisation.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_CAP_S)
            self.published_total += len(batch)
            self.batches_total += 1
        finally:
            self._unconfirmed -= len(batch)
            if self._unconfirmed == 0:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until everything put so far is logged by the bus (tests, orderly shutdown)."""
        await self._idle.wait()

    def stats(self) -> dict[str, int]:
        return {"unconfirmed": self._unconfirmed, "published_total": self.published_total,
                "batches_total": self.batches_total, "failures_total": self.failures_total}
