"""A run's events in Postgres (``qr_run_events``): written as they happen for resumable runs, read
back for a reader behind what a host keeps in memory (an earlier attempt's events, a run that
ended long ago, one whose host died)."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg_pool import AsyncConnectionPool

from runs.stream import END_EVENT, RunStream, dumps

log = logging.getLogger(__name__)

Event = tuple[int, str, bytes]
# Events go to Postgres as they happen, in batches of at most this many, gathered for at most
# this long: a host's death loses at most the last window.
FLUSH_MAX = 500
FLUSH_WINDOW_S = 0.05


async def flush(pool: AsyncConnectionPool, run_id: str, stream: RunStream) -> None:
    """Copy a run's events to qr_run_events as they come, in bounded batches, until the stream
    finished and all of it is stored: Last-Event-ID resumption then survives the death of the
    host mid-run. Never raises (a failure is logged: the run goes on)."""
    flushed = stream.next_seq - 1
    try:
        while True:
            await stream.wait_beyond(flushed)
            if not stream.finished:
                await asyncio.sleep(FLUSH_WINDOW_S)  # gather a batch
            items = stream.since(flushed)[:FLUSH_MAX]
            if items:
                async with pool.connection() as conn, conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO qr_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING", [(run_id, e.seq, e.event, e.data) for e in items])
                flushed = items[-1].seq
            elif stream.finished:
                return
    except psycopg.errors.ForeignKeyViolation:
        # The run (or its thread) was deleted while it ran: its events have nowhere to go.
        log.info("run %s: deleted while running; its events are not stored", run_id)
    except Exception:
        log.exception("run %s: storing its events failed", run_id)


async def read(pool: AsyncConnectionPool, run_id: str, after: int, before: int | None = None) -> list[Event]:
    """The stored events with ``after < seq < before``, in order."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT seq, event, data FROM qr_run_events WHERE run_id = %s AND seq > %s AND seq < %s ORDER BY seq",
            (run_id, after, 2**31 - 1 if before is None else before))
        return [(r["seq"], r["event"], bytes(r["data"])) for r in await cursor.fetchall()]


async def replay(pool: AsyncConnectionPool, run_id: str, row: dict | None, after: int) -> list[Event]:
    """A run no host holds in memory: its stored events after ``after``, ending with its end (the
    stored one, or one made from its row's status; ``missing`` when there is no row)."""
    if row is None:
        return [(0, END_EVENT, dumps({"status": "missing", "output": None}))]
    stored = await read(pool, run_id, after)
    if stored and stored[-1][1] == END_EVENT:
        return stored
    return stored + [(10**9, END_EVENT, dumps({"status": row["status"], "output": None}))]
