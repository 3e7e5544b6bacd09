"""Runs in Postgres (the same rows are the durable run queue the executors claim from)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from runs.queue import lock_thread, settle_thread
from runs.settings import RunSettings
from serve_app.errors import Conflict, NotFound
from serve_app.records import owner_filter

FIELDS = ("run_id", "thread_id", "assistant_id", "created_at", "updated_at", "status", "metadata", "kwargs",
          "multitask_strategy")


def public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in FIELDS}
    kwargs = RunSettings.public(out["kwargs"])
    if row.get("attempt") and isinstance(kwargs.get("config"), dict):
        # As the official server, whose worker writes it into the run once it starts the run.
        config = kwargs["config"]
        kwargs["config"] = {**config, "metadata": {**(config.get("metadata") or {}), "run_attempt": row["attempt"]}}
    out["kwargs"] = kwargs
    out["langsmith_session_name"] = None
    return out


async def get_row(pool: AsyncConnectionPool, thread_id: str, run_id: str, owner: str | None) -> dict:
    async with pool.connection() as conn:
        row = await (await conn.execute(
            f"SELECT * FROM qr_runs WHERE run_id = %(run)s AND thread_id = %(thread)s AND {owner_filter(owner)}",
            {"run": run_id, "thread": thread_id, "owner": owner})).fetchone()
    if row is None:
        raise NotFound(f"Run {run_id} not found")
    return row


async def list_for_thread(pool: AsyncConnectionPool, thread_id: str, owner: str | None, *, limit: int,
                          offset: int, status: str | None, select: list[str] | None) -> list[dict]:
    params: dict[str, Any] = {"thread": thread_id, "owner": owner, "limit": limit, "offset": offset}
    extra = ""
    if status:
        extra = " AND status = %(status)s"
        params["status"] = status
    async with pool.connection() as conn:
        rows = await (await conn.execute(
            f"SELECT * FROM qr_runs WHERE thread_id = %(thread)s AND {owner_filter(owner)}{extra} "
            "ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s OFFSET %(offset)s", params)).fetchall()
    items = [public(r) for r in rows]
    return [{k: v for k, v in item.items() if k in select} for item in items] if select else items


async def delete(pool: AsyncConnectionPool, thread_id: str, run_id: str, owner: str | None) -> None:
    async with pool.connection() as conn, conn.transaction():
        await lock_thread(conn, thread_id)
        row = await (await conn.execute(
            f"SELECT status FROM qr_runs WHERE run_id = %(run)s AND thread_id = %(thread)s AND {owner_filter(owner)} "
            "FOR UPDATE", {"run": run_id, "thread": thread_id, "owner": owner})).fetchone()
        if row is None:
            raise NotFound(f"Run {run_id} not found")
        if row["status"] in ("pending", "running"):
            raise Conflict(f"Run {run_id} is {row['status']}; cancel it before deleting it")
        await conn.execute("DELETE FROM qr_runs WHERE run_id = %s", (run_id,))
        await settle_thread(conn, thread_id)


async def active_runs(pool: AsyncConnectionPool, *, thread_id: str | None = None, run_ids: list[str] | None = None,
                      status: str | None = None, owner: str | None = None) -> list[dict]:
    clauses = [owner_filter(owner)]
    params: dict[str, Any] = {"owner": owner}
    statuses = {"pending": ["pending"], "running": ["running"]}.get(status or "", ["pending", "running"])
    clauses.append("status = ANY(%(statuses)s)")
    params["statuses"] = statuses
    if thread_id is not None:
        clauses.append("thread_id = %(thread)s")
        params["thread"] = thread_id
    if run_ids is not None:
        clauses.append("run_id = ANY(%(runs)s::uuid[])")
        params["runs"] = run_ids
    async with pool.connection() as conn:
        return await (await conn.execute(
            f"SELECT run_id, thread_id, executor, status FROM qr_runs WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at", params)).fetchall()
