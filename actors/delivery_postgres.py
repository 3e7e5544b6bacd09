"""The Postgres inbox store of a restartable actor (the orchestrator): ``qr_deliveries``.

Acceptance is the step a sender waits for, so it has a writer of its own: one dedicated
connection (no pool checkout on the delivery path) and one task that writes whatever is
waiting as one statement: a group commit. Idle, an acceptance costs one INSERT round trip;
under load, every delivery that arrived while the previous statement ran shares the next
one. Status updates (attempts, done, dead) go through the same writer, batched the same way,
after the acceptances that were waiting with them, so an update never overtakes the insert
of its row. Each caller still awaits its own outcome: ``accept`` returns only once the row
is written (the inbox acknowledges after that), and an error reaches the caller as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from quadracode_ray.envelope import Envelope

log = logging.getLogger(__name__)

MAX_BATCH = 1_000
RETRY_WINDOW_S = 30.0
"""How long a batch is retried while Postgres cannot be reached (a pool checkout's wait) before its
callers get the error (``deliver`` raises and the sender retries the delivery)."""
_INSERT_ONE = ("INSERT INTO qr_deliveries (recipient, envelope_id, envelope) VALUES (%s, %s, %s) "
               "ON CONFLICT DO NOTHING RETURNING envelope_id")
# WITH ORDINALITY keeps accepted_seq in arrival order (recovery replays a lane in that order).
_INSERT_MANY = ("INSERT INTO qr_deliveries (recipient, envelope_id, envelope) "
                "SELECT r, e, j FROM unnest(%s::text[], %s::text[], %s::jsonb[]) WITH ORDINALITY AS t(r, e, j, n) "
                "ORDER BY n ON CONFLICT DO NOTHING RETURNING envelope_id")
_UPDATE_MANY = ("UPDATE qr_deliveries d SET status = coalesce(u.status, d.status), attempts = u.attempts, "
                "last_error = coalesce(u.error, d.last_error), updated_at = now() "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[]) AS u(r, e, status, attempts, error) "
                "WHERE d.recipient = u.r AND d.envelope_id = u.e")


class PostgresInboxStore:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool
        self._accepts: list[tuple[str, Envelope, asyncio.Future]] = []
        self._updates: list[tuple[tuple[str, str, str | None, int, str | None], asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self.statements_total = 0
        self.rows_total = 0

    # --- the InboxStore interface ----------------------------------------------------------------
    async def accept(self, recipient: str, envelope: Envelope) -> bool:
        """Record ``envelope``; True when it is new, False when that id was accepted before."""
        future = self._submit()
        self._accepts.append((recipient, envelope, future))
        return await future

    async def record_attempt(self, recipient: str, envelope_id: str, attempts: int, error: str) -> None:
        await self._update(recipient, envelope_id, None, attempts, error)

    async def finish(self, recipient: str, envelope_id: str, status: str, attempts: int, error: str | None) -> None:
        await self._update(recipient, envelope_id, status, attempts, error)

    async def pending(self, recipient: str) -> list[tuple[Envelope, int]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT envelope, attempts FROM qr_deliveries WHERE recipient = %s AND status = 'pending' "
                "ORDER BY accepted_seq",
                (recipient,),
            )
            rows = await cur.fetchall()
        return [(Envelope.model_validate(_json(row["envelope"])), row["attempts"]) for row in rows]

    async def unfinished(self, recipient: str, envelope_id: str) -> tuple[Envelope, int] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT envelope, attempts FROM qr_deliveries WHERE recipient = %s AND envelope_id = %s "
                "AND status = 'pending'", (recipient, envelope_id))
            row = await cur.fetchone()
        return None if row is None else (Envelope.model_validate(_json(row["envelope"])), row["attempts"])

    def stats(self) -> dict[str, int]:
        return {"statements_total": self.statements_total, "rows_total": self.rows_total,
                "waiting": len(self._accepts) + len(self._updates)}

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        if self._conn is not None:
            await self._conn.close()

    # --- the writer ------------------------------------------------------------------------------
    async def _update(self, recipient: str, envelope_id: str, status: str | None, attempts: int,
                      error: str | None) -> None:
        future = self._submit()
        self._updates.append(((recipient, envelope_id, status, attempts, error), future))
        await future

    def _submit(self) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop(), name="deliveries-writer")
        self._wakeup.set()
        return loop.create_future()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        delay = 0.05
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._accepts or self._updates:
                accepts, self._accepts = self._accepts[:MAX_BATCH], self._accepts[MAX_BATCH:]
                updates, self._updates = self._updates[:MAX_BATCH], self._updates[MAX_BATCH:]
                try:
                    conn = await self._connection()
                    if accepts:
                        await self._insert(conn, accepts)
                    if updates:
                        await self._apply(conn, updates)
                    failing_since, delay = None, 0.05
                except Exception as exc:  # noqa: BLE001 - retried while Postgres is away, then the callers get it
                    await self._reset()
                    failing_since = failing_since if failing_since is not None else loop.time()
                    if isinstance(exc, psycopg.OperationalError) and loop.time() - failing_since < RETRY_WINDOW_S:
                        # Postgres restarting: keep the batch (ahead of newer work) and try again, as a pool
                        # checkout would have waited; a retried insert of a row already written is a conflict,
                        # and its caller was answered already.
                        log.warning("deliveries writer: %s; retrying in %.2f s", exc, delay)
                        self._accepts[:0] = [a for a in accepts if not a[2].done()]
                        self._updates[:0] = [u for u in updates if not u[1].done()]
                        # A retry delay while Postgres is unavailable, not synchronisation.
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 2.0)
                        continue
                    for *_, future in (*accepts, *updates):
                        if not future.done():
                            future.set_exception(exc)

    async def _insert(self, conn: psycopg.AsyncConnection, batch: list[tuple[str, Envelope, asyncio.Future]]) -> None:
        if len(batch) == 1:
            recipient, envelope, _ = batch[0]
            cur = await conn.execute(_INSERT_ONE, (recipient, envelope.id, envelope.model_dump_json()))
        else:
            cur = await conn.execute(_INSERT_MANY, ([r for r, _, _ in batch], [e.id for _, e, _ in batch],
                                                    [e.model_dump_json() for _, e, _ in batch]))
        inserted = {row["envelope_id"] for row in await cur.fetchall()}
        self.statements_total += 1
        self.rows_total += len(batch)
        for _, envelope, future in batch:
            new = envelope.id in inserted
            inserted.discard(envelope.id)  # the same id twice in a batch: only the first is new
            if not future.done():
                future.set_result(new)

    async def _apply(self, conn: psycopg.AsyncConnection, batch: list[tuple[tuple[Any, ...], asyncio.Future]]) -> None:
        columns = list(zip(*(row for row, _ in batch), strict=True))
        await conn.execute(_UPDATE_MANY, [list(column) for column in columns])
        self.statements_total += 1
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.pool.conninfo, autocommit=True,
                                                               prepare_threshold=0,
                                                               row_factory=dict_row)
        return self._conn

    async def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - it is broken anyway
                log.debug("closing a broken deliveries connection failed", exc_info=True)


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, (str, bytes)) else value
