"""The cron scheduler each API replica runs: fires due crons, once each, however many replicas.

A fire happens inside the transaction that holds the cron's row lock (``FOR UPDATE SKIP
LOCKED``), and the next due time is written in that same transaction, so two replicas never
fire the same due time. The scheduler sleeps until the earliest due cron (at most
``poll_interval_s``, so crons made on other replicas are seen), and is woken at once when this
replica creates or changes one. A fire that fails is recorded on the cron (``last_error``) and
the cron moves on to its next time; a cron whose thread or assistant is gone is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from quadracode_ray import metrics
from serve_app.crons import repository

log = logging.getLogger(__name__)

FIRES = metrics.counter("cron_fires_total", "Cron fires by outcome (run, failed, target_gone).", ("outcome",))


class CronTargetGone(Exception):
    """The cron's thread or assistant no longer exists: the cron can never fire again."""


FireFn = Callable[[dict], Awaitable[str]]


class CronScheduler:
    def __init__(self, pool: Callable[[], Awaitable[AsyncConnectionPool]], fire: FireFn, *,
                 poll_interval_s: float = 5.0, batch_size: int = 20):
        self._pool, self._fire = pool, fire
        self.poll_interval_s, self.batch_size = poll_interval_s, batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        """Look again now (a cron was created or changed)."""
        self._wake.set()

    async def tick(self) -> int:
        """Fire every cron due now; returns how many fires were made (or attempted)."""
        pool = await self._pool()
        total = 0
        while True:
            async with repository.claim_due(pool, self.batch_size) as (conn, due):
                for cron in due:
                    await self._fire_one(conn, cron)
            total += len(due)
            if len(due) < self.batch_size:
                return total

    async def _fire_one(self, conn, cron: dict) -> None:
        try:
            run_id = await self._fire(cron)
        except CronTargetGone as exc:
            log.warning("cron %s deleted: %s", cron["cron_id"], exc)
            FIRES.inc(tags={"outcome": "target_gone"})
            await repository.record_fire(conn, cron, run_id=None, error=None, delete=True)
        except Exception as exc:  # one failing cron must not stop the others
            log.warning("cron %s failed to fire: %s", cron["cron_id"], exc)
            FIRES.inc(tags={"outcome": "failed"})
            await repository.record_fire(conn, cron, run_id=None, error=f"{type(exc).__name__}: {exc}")
        else:
            FIRES.inc(tags={"outcome": "run"})
            await repository.record_fire(conn, cron, run_id=run_id, error=None)

    async def _next_wait(self) -> float:
        due_in = await repository.seconds_until_next_due(await self._pool())
        return self.poll_interval_s if due_in is None else min(due_in, self.poll_interval_s)

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
                wait = await self._next_wait()
            except asyncio.CancelledError:
                raise
            except Exception:  # Postgres away for a moment: try again after a poll interval
                log.exception("cron scheduler tick failed")
                wait = self.poll_interval_s
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.01))
            except TimeoutError:
                pass

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run_forever(), name="cron-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
