"""The event bus actor: every envelope logged once, watched live, queried from history.

Durability. An envelope sent to an actor is first recorded by its recipient (``qr_deliveries``
for the orchestrator, before it acknowledges; ``qr_tasks`` holds the truth of an agent's task),
then published here without waiting. The bus writes the log in group commits: each flush is
one transaction for everything that arrived meanwhile, so it batches under load and costs
one insert when idle. ``id`` is unique, so publishing twice logs once. A publisher that
crashes after ``deliver`` loses nothing (its recipient published); an envelope the bus had
not yet flushed when *it* crashed is restored by ``reconcile()`` from ``qr_deliveries`` at start
and every ``RECONCILE_EVERY_S``.

Bounds. The live ring holds at most ``event_ring_size`` envelopes and ``event_ring_bytes`` of their
payloads (as JSON; envelopes have no size limit, so a count alone bounds nothing: the soak saw
the bus grow while its ring filled); the unflushed queue refuses new
events past ``MAX_UNFLUSHED`` (Postgres down) instead of growing; history is pruned after
``event_retention_days``; queries return at most ``MAX_PAGE`` rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import ray
from pydantic import BaseModel, ConfigDict, JsonValue

from actors import fabric_metrics
from actors.common import (
    EVENTS,
    open_fabric_pool,
    spawn_background,
    start_with_retries,
    to_jsonable,
)
from actors.event_queries import EventQueries
from quadracode_ray.config import Settings
from quadracode_ray.envelope import SYSTEM_EVENT, Envelope, EnvelopeFilter
from quadracode_ray.ray_metrics import install_ray_metrics

log = logging.getLogger(__name__)

MAX_UNFLUSHED = 100_000
MAX_BATCH = 1_000
MAX_PAGE = 1_000
RECONCILE_EVERY_S = 30.0
PRUNE_EVERY_S = 3600.0


class EventBusOverloaded(RuntimeError):
    """The bus cannot write to Postgres and its bounded queue of unwritten events is full."""


class LoggedEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: int
    envelope: Envelope


class EventPage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[LoggedEnvelope]
    cursor: int
    """Pass it back to get what came after; it never goes backwards."""


def _payload_bytes(envelope: Envelope) -> int:
    """What an envelope's payload weighs, about: its compact JSON (the fixed fields are bounded)."""
    return len(orjson.dumps(envelope.payload, default=str)) + 512


@ray.remote(num_cpus=0)
class EventBus:
    def __init__(self, settings: Settings):
        install_ray_metrics(settings.actor_name_prefix)
        self.settings = settings
        self.ring: deque[LoggedEnvelope] = deque(maxlen=settings.event_ring_size)
        self._ring_sizes: deque[int] = deque()  # payload bytes of each ring entry, in the ring's order
        self.ring_bytes = 0
        self.retention = timedelta(days=settings.event_retention_days)
        self._unflushed: list[tuple[Envelope, asyncio.Future | None]] = []
        self._flush_wakeup = asyncio.Event()
        self._new_event = asyncio.Condition()
        # One writer of the log at a time (the flush loop or the reconcile sweep), so the ring gets
        # every logged envelope in seq order: an envelope the sweep logged while its publish was
        # still on its way was skipped by every live watcher (the publish then counted as a duplicate).
        self._writing = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._started = asyncio.get_running_loop().create_task(start_with_retries(self._start, "event bus"))
        self.logged_total = 0
        self.watchers = 0
        self.duplicates_total = 0

    async def _start(self) -> None:
        if getattr(self, "pool", None) is None:  # kept across start retries
            self.pool = await open_fabric_pool(self.settings, name="events", max_size=4)
        self.queries = EventQueries(self.pool)
        self.last_seq = await self.queries.last_seq()
        restored = await self._reconcile(None)
        if restored:
            log.warning("event bus: restored %d envelopes from accepted deliveries", restored)
        spawn_background(self._tasks, self._flush_loop(), name="events-flush")
        spawn_background(self._tasks, self._maintenance_loop(), name="events-maintenance")

    async def ready(self) -> bool:
        await self._started
        return True

    # --- publishing ---------------------------------------------------------------------------
    async def publish(self, envelope: Envelope) -> bool:
        """Log ``envelope`` (once per id); returns when it is in Postgres. False: already logged."""
        await self._started
        future = asyncio.get_running_loop().create_future()
        self._queue(envelope, future)
        return await future

    async def publish_many(self, envelopes: list[Envelope]) -> int:
        await self._started
        loop = asyncio.get_running_loop()
        futures = []
        for envelope in envelopes:
            futures.append(loop.create_future())
            self._queue(envelope, futures[-1])
        return sum(bool(x) for x in await asyncio.gather(*futures))

    async def publish_event(self, sender: str, kind: str, payload: dict[str, Any], *,
                            thread_id: str | None = None, recipient: str = EVENTS,
                            id: str | None = None) -> str:
        """Log a plain event (not delivered to any actor): sandbox operations, graph updates, ..."""
        fields: dict[str, Any] = {"sender": sender, "recipient": recipient, "kind": kind, "thread_id": thread_id,
                                  "payload": to_jsonable(payload)}
        if id is not None:
            fields["id"] = id
        envelope = Envelope(**fields)
        await self.publish(envelope)
        return envelope.id

    async def emit(self, event: Any) -> str:
        """The sandbox's event sink: any pydantic event, logged as a ``system_event``."""
        payload = to_jsonable(event)
        if not isinstance(payload, dict):
            payload = {"event": payload}
        source = str(payload.get("workspace_id") or payload.get("source") or "sandbox")
        return await self.publish_event(f"workspace:{source}" if "workspace_id" in payload else source,
                                        SYSTEM_EVENT, payload)

    def _queue(self, envelope: Envelope, future: asyncio.Future | None) -> None:
        if len(self._unflushed) >= MAX_UNFLUSHED:
            raise EventBusOverloaded(f"{MAX_UNFLUSHED} events wait for Postgres; refusing more until it answers")
        self._unflushed.append((envelope, future))
        self._flush_wakeup.set()

    async def _flush_loop(self) -> None:
        delay = 0.05
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            while self._unflushed:
                batch = self._unflushed[:MAX_BATCH]
                try:
                    async with self._writing:
                        seqs = await self.queries.insert([envelope for envelope, _ in batch])
                        del self._unflushed[:len(batch)]
                        await self._logged(batch, seqs)
                except Exception as exc:  # noqa: BLE001 - keep the batch and retry; never drop
                    log.error("event bus: writing %d events failed, retrying: %s", len(batch), exc)
                    # A retry delay while Postgres is unavailable, not synchronisation.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.05

    async def _logged(self, batch: list[tuple[Envelope, asyncio.Future | None]], seqs: list[int | None]) -> None:
        async with self._new_event:
            for (envelope, future), seq in zip(batch, seqs, strict=True):
                if seq is not None:
                    self._ring_append(LoggedEnvelope(seq=seq, envelope=envelope))
                    self.last_seq = max(self.last_seq, seq)
                    self.logged_total += 1
                    fabric_metrics.envelopes().inc(tags={"kind": envelope.kind})
                else:
                    self.duplicates_total += 1
                if future is not None and not future.done():
                    future.set_result(seq is not None)
            self._new_event.notify_all()

    def _ring_append(self, item: LoggedEnvelope) -> None:
        """Append to the live ring, dropping its oldest entries past the count or the byte bound."""
        size = _payload_bytes(item.envelope)
        if len(self.ring) == self.ring.maxlen:  # the deque drops its oldest itself
            self.ring_bytes -= self._ring_sizes.popleft()
        self.ring.append(item)
        self._ring_sizes.append(size)
        self.ring_bytes += size
        while self.ring_bytes > self.settings.event_ring_bytes and len(self.ring) > 1:
            self.ring.popleft()
            self.ring_bytes -= self._ring_sizes.popleft()

    # --- reading ------------------------------------------------------------------------------
    async def poll(self, cursor: int = 0, filter: EnvelopeFilter | None = None, limit: int = 100,
                   wait_s: float = 0.0) -> EventPage:
        """Envelopes after ``cursor``; with ``wait_s`` it waits (pushed, not polled) for the first one."""
        await self._started
        limit = max(1, min(limit, MAX_PAGE))
        flt = filter or EnvelopeFilter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait_s, 300.0))
        while True:
            page = await self._after(cursor, flt, limit)
            if page.events or loop.time() >= deadline:
                return page
            cursor = page.cursor
            async with self._new_event:
                if self.last_seq <= cursor:
                    try:
                        await asyncio.wait_for(self._new_event.wait(), deadline - loop.time())
                    except TimeoutError:
                        pass

    async def _after(self, cursor: int, flt: EnvelopeFilter, limit: int) -> EventPage:
        if self.ring and cursor >= self.ring[0].seq - 1:
            newer: list[LoggedEnvelope] = []
            for item in reversed(self.ring):
                if item.seq <= cursor:
                    break
                newer.append(item)
            newer.reverse()
            found = []
            scanned_to = cursor
            for item in newer:
                scanned_to = item.seq
                if flt.matches(item.envelope):
                    found.append(item)
                    if len(found) >= limit:
                        break
            return EventPage(events=found, cursor=max(cursor, scanned_to))
        # Behind the ring (a slow watcher, or a restart): read history. Everything up to last_seq as
        # it is before the read is committed, so the read sees it; what is logged during the read is not.
        known = self.last_seq
        page = await self.queries.select_matching(flt, after_seq=cursor, limit=limit)
        events = [LoggedEnvelope(seq=seq, envelope=env) for seq, env in page.rows]
        if events or not page.exhausted:
            return EventPage(events=events, cursor=max(cursor, page.position or 0))
        return EventPage(events=[], cursor=max(cursor, known))

    async def watch(self, filter: EnvelopeFilter | None = None, cursor: int | None = None,
                    limit: int | None = None) -> AsyncIterator[LoggedEnvelope]:
        """Stream matching envelopes as they are logged (a Ray streaming generator).

        ``cursor`` None starts from now; a number replays what came after it first.
        Call with ``.options(num_returns="streaming")``; cancel the generator to stop.
        """
        await self._started
        position = self.last_seq if cursor is None else cursor
        flt = filter or EnvelopeFilter()
        sent = 0
        self.watchers += 1
        try:
            while limit is None or sent < limit:
                page = await self._after(position, flt, MAX_PAGE)
                position = page.cursor
                for item in page.events:
                    yield item
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
                if not page.events:
                    async with self._new_event:
                        if self.last_seq <= position:
                            await self._new_event.wait()
        finally:
            self.watchers -= 1

    async def query(self, filter: EnvelopeFilter | None = None, *, after_seq: int | None = None,
                    before_seq: int | None = None, limit: int = 100, newest_first: bool = False) -> list[LoggedEnvelope]:
        """History from Postgres (time range, sender, recipient, kind, thread; a regex on the payload's text
        is applied to at most ``SCAN_LIMIT`` rows, so a page may hold fewer than ``limit``)."""
        await self._started
        page = await self.queries.select_matching(filter or EnvelopeFilter(), after_seq=after_seq,
                                                  before_seq=before_seq, limit=max(1, min(limit, MAX_PAGE)),
                                                  newest_first=newest_first)
        return [LoggedEnvelope(seq=seq, envelope=env) for seq, env in page.rows]

    async def count(self, filter: EnvelopeFilter | None = None) -> int:
        await self._started
        return await self.queries.count(filter or EnvelopeFilter())

    async def dead_letters(self, limit: int = 100) -> list[dict[str, JsonValue]]:
        """Envelopes whose handler failed every attempt, newest first, with the last error."""
        await self._started
        return await self.queries.dead_letters(max(1, min(limit, MAX_PAGE)))

    async def flush(self) -> int:
        """Wait until everything published so far is in Postgres; returns the last seq."""
        await self._started
        async with self._new_event:
            while self._unflushed:
                await self._new_event.wait()
        return self.last_seq

    async def stats(self) -> dict[str, Any]:
        await self._started
        return {"ring": len(self.ring), "ring_size": self.ring.maxlen, "ring_bytes": self.ring_bytes,
                "ring_bytes_max": self.settings.event_ring_bytes, "unflushed": len(self._unflushed),
                "last_seq": self.last_seq, "logged_total": self.logged_total, "watchers": self.watchers,
                "duplicates_total": self.duplicates_total, "retention_days": self.settings.event_retention_days}

    # --- maintenance ---------------------------------------------------------------------------
    async def reconcile(self, window_s: float | None = None) -> int:
        """Log accepted envelopes missing from the log (None: all of them)."""
        await self._started
        return await self._reconcile(window_s)

    async def _reconcile(self, window_s: float | None) -> int:
        async with self._writing:
            restored = await self.queries.reconcile(window_s)
            await self._logged([(envelope, None) for _, envelope in restored], [seq for seq, _ in restored])
        return len(restored)

    async def prune(self, older_than: datetime | None = None) -> int:
        """Delete history older than the retention (or ``older_than``); returns rows deleted."""
        await self._started
        cutoff = older_than or datetime.now(UTC) - self.retention
        return await self.queries.prune(cutoff)

    async def _maintenance_loop(self) -> None:
        since_prune = PRUNE_EVERY_S
        while True:
            # Periodic by nature (retention and the crash-repair sweep), not a mailbox poll.
            await asyncio.sleep(RECONCILE_EVERY_S)
            since_prune += RECONCILE_EVERY_S
            try:
                await self.reconcile(RECONCILE_EVERY_S * 20)
                if since_prune >= PRUNE_EVERY_S:
                    since_prune = 0.0
                    await self.prune()
            except Exception:  # noqa: BLE001 - retried at the next round
                log.exception("event bus maintenance failed")
