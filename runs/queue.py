"""The durable run queue in Postgres (table ``qr_runs``) and thread status bookkeeping.

Rules every writer follows, so thread status always matches its runs:
- lock the thread row first, then run rows (one lock order, no deadlocks);
- a thread with a pending or running run is ``busy``; otherwise its status is the outcome
  of its last run (``idle``, ``interrupted`` or ``error``);
- at most one run per thread is ``running``; pending runs start oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

TERMINAL_STATUSES = ("success", "error", "timeout", "interrupted")


@dataclass(frozen=True)
class ClaimResult:
    run: dict[str, Any] | None = None
    not_before: datetime | None = None  # pending but not due yet (after_seconds)


@dataclass(frozen=True)
class NextRun:
    run_id: str
    executor: str | None


async def lock_thread(conn: AsyncConnection, thread_id: Any) -> dict | None:
    cursor = await conn.execute("SELECT * FROM qr_threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
    return await cursor.fetchone()


async def settle_thread(conn: AsyncConnection, thread_id: Any, outcome: str | None = None) -> str:
    """Recompute a (locked) thread's status from its runs; ``outcome`` applies when none is active."""
    cursor = await conn.execute(
        "SELECT 1 FROM qr_runs WHERE thread_id = %s AND status IN ('pending', 'running') LIMIT 1", (thread_id,)
    )
    active = await cursor.fetchone() is not None
    if active:
        status = "busy"
    elif outcome is not None:
        status = outcome
    else:
        cursor = await conn.execute("SELECT status FROM qr_threads WHERE thread_id = %s", (thread_id,))
        row = await cursor.fetchone()
        status = row["status"] if row and row["status"] != "busy" else "idle"
    await conn.execute("UPDATE qr_threads SET status = %s, updated_at = now() WHERE thread_id = %s",
                       (status, thread_id))
    return status


async def next_pending(conn: AsyncConnection, thread_id: Any) -> NextRun | None:
    cursor = await conn.execute(
        "SELECT run_id, executor FROM qr_runs WHERE thread_id = %s AND status = 'pending' "
        "ORDER BY created_at, run_id LIMIT 1",
        (thread_id,),
    )
    row = await cursor.fetchone()
    return NextRun(str(row["run_id"]), row["executor"]) if row else None


async def claim(pool: AsyncConnectionPool, run_id: str, executor: str) -> ClaimResult:
    """Move a pending run to running if it is due, first in line, and its thread is free.

    One round trip: ``qr_claim_run`` (migration api/0002) does it in one transaction."""
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT * FROM qr_claim_run(%s, %s)", (run_id, executor))
        row = await cursor.fetchone()
    if row is None:
        return ClaimResult()
    if row["status"] == "pending":
        return ClaimResult(not_before=row["available_at"])
    return ClaimResult(run=row)


async def finish(
    pool: AsyncConnectionPool,
    run_id: str,
    status: str,
    *,
    thread_outcome: str,
    error: dict | None = None,
    values: Any = None,
    interrupts: dict | None = None,
    write_state: bool = True,
    delete_run: bool = False,
    delete_thread: bool = False,
) -> NextRun | None:
    """Record a run's end and its thread's new state; return the thread's next pending run.

    One round trip: ``qr_finish_run`` (migration api/0002) does it in one transaction."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT * FROM qr_finish_run(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, status, thread_outcome, Jsonb(error) if error is not None else None,
             Jsonb(values) if values is not None else None, Jsonb(interrupts or {}), write_state, delete_run,
             delete_thread))
        row = await cursor.fetchone()
    return NextRun(str(row["next_run_id"]), row["next_executor"]) if row else None


async def release_for_retry(pool: AsyncConnectionPool, run_id: str) -> None:
    """A running run whose attempt was cut short goes back to pending (same executor)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE qr_runs SET status = 'pending', updated_at = now() WHERE run_id = %s AND status = 'running'",
            (run_id,),
        )


RETRY_CAUSES = ("outage_retries", "error_retries")
"""The columns (migration api/0006) counting a run's retries after its graph met a database
outage and after its graph raised; executor deaths are counted apart, by ``recover``."""


async def retries_so_far(pool: AsyncConnectionPool, run_id: str, cause: str) -> int:
    """How many times ``run_id`` was already retried for ``cause`` (one of ``RETRY_CAUSES``)."""
    if cause not in RETRY_CAUSES:
        raise ValueError(f"unknown retry cause {cause!r}")
    async with pool.connection() as conn:
        cursor = await conn.execute(f"SELECT {cause} FROM qr_runs WHERE run_id = %s", (run_id,))
        row = await cursor.fetchone()
    return row[cause] if row else 0


async def retry_later(pool: AsyncConnectionPool, run_id: str, delay_s: float, cause: str) -> None:
    """A running run whose graph raised goes back to pending, due in ``delay_s``: first in its
    thread's line still (runs start oldest first), so nothing queued behind it overtakes it.
    The retry is counted under ``cause`` alone (one of ``RETRY_CAUSES``)."""
    if cause not in RETRY_CAUSES:
        raise ValueError(f"unknown retry cause {cause!r}")
    async with pool.connection() as conn:
        await conn.execute(
            f"UPDATE qr_runs SET status = 'pending', available_at = now() + make_interval(secs => %s), "
            f"{cause} = {cause} + 1, updated_at = now() WHERE run_id = %s AND status = 'running'", (delay_s, run_id))


# Orphans: runs of a run-executor no longer in the pool (the pool shrank). Runs of other hosts
# (the orchestrator actor, agents) are never orphans of the pool.
_ORPHAN = "(%s AND executor LIKE 'run-executor-%%' AND NOT executor = ANY(%s))"


async def recover(pool: AsyncConnectionPool, executor: str, pool_names: list[str],
                  max_attempts: int, *, adopt_orphans: bool | None = None) -> list[str]:
    """After an executor (re)starts: its interrupted runs go back to the queue, or fail when
    their executor died ``max_attempts`` times running them (deaths alone count: retries after
    a database outage or an error of the graph do not); returns the due pending runs it should
    now push.

    Runs assigned to an executor no longer in the pool are adopted by the first executor
    (``adopt_orphans`` defaults to "``executor`` is the pool's first").
    """
    if adopt_orphans is None:
        adopt_orphans = executor == pool_names[0]
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT run_id, thread_id, executor_deaths FROM qr_runs WHERE status = 'running' AND "
            "(executor = %s OR " + _ORPHAN + ")",
            (executor, adopt_orphans, pool_names),
        )
        stranded = await cursor.fetchall()
    for row in stranded:
        async with pool.connection() as conn, conn.transaction():
            await lock_thread(conn, row["thread_id"])
            deaths = row["executor_deaths"] + 1  # this one included
            if deaths >= max_attempts:
                message = (f"the run's executor died {deaths} time(s) while running it; "
                           f"giving up after {max_attempts} attempt(s)")
                await conn.execute(
                    "UPDATE qr_runs SET status = 'error', error = %s, ended_at = now(), updated_at = now() "
                    "WHERE run_id = %s AND status = 'running'",
                    (Jsonb({"error": "ExecutorDied", "message": message}), row["run_id"]),
                )
                await conn.execute("UPDATE qr_threads SET error = %s WHERE thread_id = %s",
                                   (Jsonb({"error": "ExecutorDied", "message": message}), row["thread_id"]))
                await settle_thread(conn, row["thread_id"], "error")
            else:
                await conn.execute(
                    "UPDATE qr_runs SET status = 'pending', executor = %s, executor_deaths = executor_deaths + 1, "
                    "updated_at = now() "
                    "WHERE run_id = %s AND status = 'running'",
                    (executor, row["run_id"]),
                )
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT run_id FROM qr_runs WHERE status = 'pending' AND available_at <= now() + interval '1 hour' "
            "AND (executor = %s OR executor IS NULL OR " + _ORPHAN + ") "
            "ORDER BY created_at",
            (executor, adopt_orphans, pool_names),
        )
        return [str(row["run_id"]) for row in await cursor.fetchall()]


async def database_now(pool: AsyncConnectionPool) -> datetime:
    """The database's clock (the one ``started_at`` and the other timestamps of a run use)."""
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT now() AS now")).fetchone())["now"]


async def stale_running(pool: AsyncConnectionPool, executor: str, grace_s: float) -> list[str]:
    """Runs recorded as running on ``executor`` for longer than ``grace_s`` (the caller keeps
    those it really runs): inserted claimed, their handover to the host was lost."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT run_id FROM qr_runs WHERE status = 'running' AND executor = %s "
            "AND started_at < now() - make_interval(secs => %s)", (executor, grace_s))
        return [str(row["run_id"]) for row in await cursor.fetchall()]


async def run_status(pool: AsyncConnectionPool, run_id: str) -> dict | None:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT * FROM qr_runs WHERE run_id = %s", (run_id,))
        return await cursor.fetchone()


async def recover_pending(pool: AsyncConnectionPool, executor: str, pool_names: list[str], *,
                          adopt_orphans: bool | None = None) -> list[str]:
    """Due pending runs this executor should hold (its own, unassigned, or orphaned)."""
    if adopt_orphans is None:
        adopt_orphans = executor == pool_names[0]
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT run_id FROM qr_runs WHERE status = 'pending' AND available_at <= now() "
            "AND (executor = %s OR executor IS NULL OR " + _ORPHAN + ") ORDER BY created_at",
            (executor, adopt_orphans, pool_names),
        )
        return [str(row["run_id"]) for row in await cursor.fetchall()]


async def cancel_pending(pool: AsyncConnectionPool, run_id: str, action: str, *,
                         claimed_by: str | None = None) -> tuple[bool, NextRun | None]:
    """Cancel a run that has not started: ``interrupt`` marks it, ``rollback`` deletes it.
    ``claimed_by``: a run recorded as running on that host counts as not started (the host
    asking holds no task for it: it was inserted claimed and never handed over)."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute("SELECT thread_id FROM qr_runs WHERE run_id = %s", (run_id,))
        found = await cursor.fetchone()
        if found is None:
            return False, None
        await lock_thread(conn, found["thread_id"])
        cursor = await conn.execute("SELECT status, executor FROM qr_runs WHERE run_id = %s FOR UPDATE", (run_id,))
        row = await cursor.fetchone()
        unstarted = row is not None and (row["status"] == "pending" or (
            claimed_by is not None and row["status"] == "running" and row["executor"] == claimed_by))
        if not unstarted:
            return False, None
        if action == "rollback":
            await conn.execute("DELETE FROM qr_runs WHERE run_id = %s", (run_id,))
        else:
            await conn.execute(
                "UPDATE qr_runs SET status = 'interrupted', ended_at = now(), updated_at = now() WHERE run_id = %s",
                (run_id,),
            )
        await settle_thread(conn, found["thread_id"])
        return True, await next_pending(conn, found["thread_id"])
