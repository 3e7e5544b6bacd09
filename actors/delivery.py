"""Push delivery of envelopes: at-least-once, de-duplicated by envelope id, retried, never dropped.

A sender calls the recipient actor's async ``deliver(envelope)``; the recipient's Inbox first
records the envelope (``InboxStore.accept``) and only then acknowledges, so once ``deliver``
returns the sender may forget it. A second delivery of the same id is acknowledged as a
duplicate and has no effect. Accepted envelopes are handled in *lanes* (per thread, say):
one at a time and in order within a lane, lanes concurrently. A handler that raises is
retried with exponential backoff; after ``max_attempts`` the envelope is marked dead and a
``dead_letter`` envelope is published, so the event bus shows it. Nothing waits on a timer
for work: an accepted envelope wakes its lane at once.

Two paths to the recipient, the same ``deliver`` at the end: a sender on the recipient's Ray
node writes the envelope on the recipient's Unix socket (``actors.local_channel``, about ten
times faster than an actor call); a sender elsewhere, or one that finds no socket listening,
calls the actor's ``deliver`` through Ray. A send whose socket breaks before the answer is
sent again through Ray, which also tells whether the recipient died; its id de-duplicates it.

Two stores: Postgres for restartable actors (the orchestrator; ``actors.delivery_postgres``,
group-committed on a connection of its own): what is pending survives a restart and is
handled again by ``recover()``; memory for agents, which are never restarted
(a dead agent is replaced, and its task's truth lives in the orchestrator's ``qr_tasks``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import ray
from pydantic import BaseModel, ConfigDict

from actors import fabric_metrics
from actors.common import HandleCache
from actors.delivery_postgres import PostgresInboxStore
from actors.local_channel import ChannelServer, ChannelUnavailable, sweep_now_and_then
from quadracode_ray.config import Settings
from quadracode_ray.envelope import DEAD_LETTER, Envelope

log = logging.getLogger(__name__)
__all__ = ["DeliveryFailed", "DeliveryReceipt", "Inbox", "InboxOverloaded", "InboxStore", "MemoryInboxStore",
           "PostgresInboxStore", "RecipientGone", "send", "serve_deliveries", "sweep_channel_sockets"]

Handler = Callable[[Envelope], Awaitable[None]]
Publish = Callable[[Envelope], None]
BACKOFF_CAP_S = 30.0
MAX_QUEUED = 100_000


class InboxOverloaded(RuntimeError):
    """The recipient holds MAX_QUEUED envelopes not yet handled; the sender should retry later."""


class DeliveryReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envelope_id: str
    status: Literal["accepted", "duplicate"]


class DeliveryFailed(RuntimeError):
    """The recipient's ``deliver`` raised something other than overload or a bad envelope."""


class RecipientGone(RuntimeError):
    """The recipient actor is dead and will not come back (an agent); the sender must reroute."""


class InboxStore(Protocol):
    async def accept(self, recipient: str, envelope: Envelope) -> bool: ...

    async def record_attempt(self, recipient: str, envelope_id: str, attempts: int, error: str) -> None: ...

    async def finish(self, recipient: str, envelope_id: str, status: str, attempts: int, error: str | None) -> None: ...

    async def pending(self, recipient: str) -> list[tuple[Envelope, int]]: ...

    async def unfinished(self, recipient: str, envelope_id: str) -> tuple[Envelope, int] | None:
        """The envelope and its attempts if it was accepted and is neither done nor dead."""
        ...


class MemoryInboxStore:
    """De-duplication for an actor that is replaced rather than restarted; bounded."""

    def __init__(self, remember: int = 100_000):
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self.dead: list[tuple[Envelope, str]] = []

    async def accept(self, recipient: str, envelope: Envelope) -> bool:
        if envelope.id in self._seen:
            return False
        self._seen[envelope.id] = "pending"
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return True

    async def record_attempt(self, recipient: str, envelope_id: str, attempts: int, error: str) -> None:
        return None

    async def finish(self, recipient: str, envelope_id: str, status: str, attempts: int, error: str | None) -> None:
        if envelope_id in self._seen:
            self._seen[envelope_id] = status

    async def pending(self, recipient: str) -> list[tuple[Envelope, int]]:
        return []

    async def unfinished(self, recipient: str, envelope_id: str) -> tuple[Envelope, int] | None:
        return None  # what this store accepted is queued in this process for as long as it lives


class Inbox:
    def __init__(
        self,
        recipient: str,
        store: InboxStore,
        handler: Handler,
        *,
        lane_of: Callable[[Envelope], str],
        max_attempts: int,
        backoff_s: float,
        publish: Publish,
        backlogged: Callable[[], bool] = lambda: False,
    ):
        self.recipient = recipient
        self.store = store
        self.handler = handler
        self.lane_of = lane_of
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.publish = publish
        self.backlogged = backlogged
        """True while the publisher's bounded buffer is full: new envelopes are refused, not queued."""
        self._lanes: dict[str, deque[tuple[Envelope, int]]] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._in_flight: set[str] = set()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- accepting ---------------------------------------------------------------------------
    async def recover(self) -> int:
        """Queue again what was accepted but not finished before a restart; then open the inbox."""
        try:
            recovered = 0
            for envelope, attempts in await self.store.pending(self.recipient):
                if envelope.id not in self._in_flight:
                    self._enqueue(envelope, attempts)
                    recovered += 1
            return recovered
        finally:
            self._ready.set()

    def open(self) -> None:
        """Open without recovering (stores with nothing to recover)."""
        self._ready.set()

    async def deliver(self, envelope: Envelope) -> DeliveryReceipt:
        await self._ready.wait()
        if envelope.recipient != self.recipient:
            raise ValueError(f"envelope {envelope.id} is addressed to {envelope.recipient!r}, not {self.recipient!r}")
        if len(self._in_flight) >= MAX_QUEUED and envelope.id not in self._in_flight:
            raise InboxOverloaded(f"{self.recipient} has {len(self._in_flight)} envelopes waiting; retry later")
        if self.backlogged() and envelope.id not in self._in_flight:
            raise InboxOverloaded(f"{self.recipient} cannot reach the event bus; retry later")
        if envelope.id in self._in_flight or not await self.store.accept(self.recipient, envelope):
            await self._adopt_orphan(envelope.id)
            fabric_metrics.deliveries().inc(tags={"recipient": self._metric_recipient, "outcome": "duplicate"})
            return DeliveryReceipt(envelope_id=envelope.id, status="duplicate")
        self._enqueue(envelope, 0)
        # Published right after the acknowledgement leaves, keeping the bus off the sender's path.
        asyncio.get_running_loop().call_soon(self._accepted, envelope)
        return DeliveryReceipt(envelope_id=envelope.id, status="accepted")

    async def _adopt_orphan(self, envelope_id: str) -> None:
        """A duplicate that is unfinished and not queued here was accepted by a predecessor whose
        insert committed after this inbox recovered (a statement outliving its dead sender's
        connection): the sender is delivering it again because it never got the acknowledgement,
        and nobody else will ever handle it, so it is queued now."""
        if envelope_id in self._in_flight:
            return
        orphan = await self.store.unfinished(self.recipient, envelope_id)
        if orphan is not None and envelope_id not in self._in_flight:
            log.warning("%s: %s was accepted before a restart and never handled; handling it now",
                        self.recipient, envelope_id)
            self._enqueue(*orphan)

    def _accepted(self, envelope: Envelope) -> None:
        fabric_metrics.deliveries().inc(tags={"recipient": self._metric_recipient, "outcome": "accepted"})
        self.publish(envelope)

    @property
    def _metric_recipient(self) -> str:
        return "agent" if self.recipient not in ("orchestrator", "registry", "fleet", "events") else self.recipient

    def _enqueue(self, envelope: Envelope, attempts: int) -> None:
        self._in_flight.add(envelope.id)
        self._idle.clear()
        lane = self.lane_of(envelope)
        self._lanes.setdefault(lane, deque()).append((envelope, attempts))
        if lane not in self._workers:
            self._workers[lane] = asyncio.get_running_loop().create_task(self._drain(lane), name=f"lane:{lane}")

    # --- handling ------------------------------------------------------------------------------
    async def _drain(self, lane: str) -> None:
        queue = self._lanes[lane]
        try:
            while queue:
                envelope, attempts = queue[0]
                try:
                    await self._handle(envelope, attempts)
                finally:
                    queue.popleft()
                    self._in_flight.discard(envelope.id)
        finally:
            del self._workers[lane]
            if not queue:
                self._lanes.pop(lane, None)
            if not self._workers:
                self._idle.set()

    async def _handle(self, envelope: Envelope, attempts: int) -> None:
        error = ""
        while attempts < self.max_attempts:
            try:
                await self.handler(envelope.for_attempt(attempts))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                attempts += 1
                error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: handler failed on %s (attempt %d/%d): %s", self.recipient, envelope.id,
                            attempts, self.max_attempts, error)
                fabric_metrics.deliveries().inc(tags={"recipient": self._metric_recipient, "outcome": "retried"})
                await self.store.record_attempt(self.recipient, envelope.id, attempts, error)
                if attempts < self.max_attempts:
                    # A retry delay, not synchronisation: give a transient cause time to pass.
                    await asyncio.sleep(min(BACKOFF_CAP_S, self.backoff_s * 2 ** (attempts - 1)))
                continue
            await self.store.finish(self.recipient, envelope.id, "done", attempts + 1, None)
            fabric_metrics.deliveries().inc(tags={"recipient": self._metric_recipient, "outcome": "handled"})
            return
        await self.store.finish(self.recipient, envelope.id, "dead", attempts, error)
        fabric_metrics.deliveries().inc(tags={"recipient": self._metric_recipient, "outcome": "dead"})
        if isinstance(self.store, MemoryInboxStore):
            self.store.dead.append((envelope, error))
        self.publish(Envelope(
            id=f"dead:{self.recipient}:{envelope.id}", sender=self.recipient, recipient="events", kind=DEAD_LETTER,
            thread_id=envelope.thread_id,
            payload={"envelope": json.loads(envelope.model_dump_json()), "attempts": attempts, "error": error},
        ))

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def stats(self) -> dict[str, int]:
        return {"lanes": len(self._workers), "in_flight": len(self._in_flight),
                "queued": sum(len(q) for q in self._lanes.values())}

    async def close(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()


# --- the same-node path -----------------------------------------------------------------------------
async def serve_deliveries(handles: HandleCache, address: str,
                           deliver: Callable[[Envelope], Awaitable[DeliveryReceipt]]) -> ChannelServer | None:
    """Take envelopes for ``address`` on this node's socket too, into ``deliver`` (the actor's
    own). None when channels are off or the socket cannot be made: senders then call through Ray."""
    path = handles.channel_path(address)
    if path is None:
        return None

    async def answer(body: bytes) -> bytes:
        try:
            receipt = await deliver(Envelope.model_validate_json(body))
        except InboxOverloaded as exc:
            return json.dumps({"error": "overloaded", "message": str(exc)}).encode()
        except ValueError as exc:  # a bad envelope (pydantic's errors are ValueErrors too), or misaddressed
            return json.dumps({"error": "invalid", "message": str(exc)}).encode()
        except Exception as exc:  # noqa: BLE001 - returned to the sender, as a Ray call would raise it there
            return json.dumps({"error": "failed", "message": f"{type(exc).__name__}: {exc}"}).encode()
        return receipt.model_dump_json().encode()

    try:
        server = await ChannelServer(path, answer).start()
    except OSError as exc:
        log.warning("%s: no same-node socket at %s (%s); senders will use Ray calls", address, path, exc)
        return None
    return server


async def sweep_channel_sockets(settings: Settings) -> int:
    """Remove sockets of SIGKILLed actors and of nodes long gone (now and then, in a thread);
    actors run it in the background when they start listening."""
    if not settings.fabric_local_channel:
        return 0
    return await asyncio.to_thread(sweep_now_and_then, settings.fabric_channel_dir)


async def _deliver_over_channel(handles: HandleCache, envelope: Envelope) -> DeliveryReceipt | None:
    """The recipient's answer over this node's socket; None when it has none here (or it broke)."""
    path = handles.channel_path(envelope.recipient)
    if path is None:
        return None
    try:
        answer = json.loads(await handles.channels.request(path, envelope.model_dump_json().encode()))
    except ChannelUnavailable:
        return None  # another node, not listening yet, or gone: the Ray call finds out which
    error = answer.get("error")
    if error is None:
        return DeliveryReceipt.model_validate(answer)
    if error == "overloaded":
        raise InboxOverloaded(answer["message"])
    if error == "invalid":
        raise ValueError(answer["message"])  # what the Ray call raises (a RayTaskError that is a ValueError)
    raise DeliveryFailed(f"{envelope.recipient} failed to take {envelope.kind} {envelope.id}: {answer['message']}")


# --- sending ---------------------------------------------------------------------------------------
async def send(handles: HandleCache, envelope: Envelope, *, restartable: bool, deadline_s: float = 60.0,
               backoff_s: float = 0.05) -> DeliveryReceipt:
    """Deliver ``envelope`` to its recipient's actor until it is acknowledged.

    ``restartable``: the recipient comes back after a crash (singletons), so failures are
    retried until ``deadline_s``; otherwise (agents) a dead recipient raises RecipientGone.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    delay = backoff_s
    while True:
        try:
            receipt = await _deliver_over_channel(handles, envelope)
            if receipt is not None:
                return receipt
            handle = handles.get(envelope.recipient)
            return await handle.deliver.remote(envelope)
        except ray.exceptions.ActorDiedError as exc:
            handles.forget(envelope.recipient)
            if not restartable:
                raise RecipientGone(f"{envelope.recipient} is gone: {exc}") from exc
            failure: Exception = exc
        except ValueError as exc:  # no actor of that name (yet, or any more)
            handles.forget(envelope.recipient)
            if not restartable:
                raise RecipientGone(f"no actor for {envelope.recipient}: {exc}") from exc
            failure = exc
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError) as exc:
            handles.forget(envelope.recipient)
            failure = exc
        except InboxOverloaded as exc:
            failure = exc
        if loop.time() >= give_up:
            raise TimeoutError(f"could not deliver {envelope.kind} {envelope.id} to {envelope.recipient} "
                               f"within {deadline_s:.0f} s: {failure}") from failure
        # A retry delay while the recipient restarts, not synchronisation.
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
