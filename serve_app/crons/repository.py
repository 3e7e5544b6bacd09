"""Crons in Postgres: create, read, search, count, update, delete, and claiming due ones.

Owner scoping as every API record: with auth on a caller sees only its own crons (404 for
others'); anonymous callers (auth off) see all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from serve_app.crons.models import SCHEDULE_FIELDS, CronCount, CronCreate, CronPatch, CronSearch
from serve_app.crons.schedule import next_run_date

_COLUMNS = ("cron_id, assistant_id, thread_id, on_run_completed, end_time, schedule, timezone, created_at, "
            "updated_at, coalesce(owner, '') AS user_id, payload, next_run_date, metadata, enabled")


def _owned(owner: str | None) -> str:
    return "TRUE" if owner is None else "owner = %(owner)s"


def with_cron_id(payload: dict, cron_id: Any) -> dict:
    """As the official server, a cron's payload names it in config.configurable.cron_id."""
    config = dict(payload.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), "cron_id": str(cron_id)}
    return {**payload, "config": config}


def not_found(cron_id: Any) -> HTTPException:
    return HTTPException(status_code=404, detail=f"Cron '{cron_id}' not found")


async def insert(pool: AsyncConnectionPool, body: CronCreate, *, assistant_id: str, thread_id: str | None,
                 owner: str | None) -> dict:
    now = datetime.now(UTC)
    cron_id = uuid.uuid4()
    payload = with_cron_id({**body.model_dump(mode="json", exclude_unset=True), "assistant_id": assistant_id},
                           cron_id)
    on_completed = None if thread_id is not None else (body.on_run_completed or "delete")
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"INSERT INTO qr_crons (cron_id, assistant_id, thread_id, owner, schedule, timezone, end_time, payload, "
            f"metadata, on_run_completed, enabled, next_run_date, created_at, updated_at) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (cron_id, assistant_id, thread_id, owner, body.schedule, body.timezone, body.end_time,
             Jsonb(payload), Jsonb(body.metadata or {}), on_completed, body.enabled,
             next_run_date(body.schedule, now, body.timezone), now, now),
        )
        return await cursor.fetchone()


async def get(pool: AsyncConnectionPool, cron_id: str, owner: str | None) -> dict:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM qr_crons WHERE cron_id = %(id)s AND {_owned(owner)}",
            {"id": cron_id, "owner": owner})
        row = await cursor.fetchone()
    if row is None:
        raise not_found(cron_id)
    return row


async def delete(pool: AsyncConnectionPool, cron_id: str, owner: str | None) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"DELETE FROM qr_crons WHERE cron_id = %(id)s AND {_owned(owner)} RETURNING cron_id",
            {"id": cron_id, "owner": owner})
        if await cursor.fetchone() is None:
            raise not_found(cron_id)


async def update(pool: AsyncConnectionPool, cron_id: str, body: CronPatch, owner: str | None) -> dict:
    """Schedule fields replace; run fields merge into the payload; metadata merges (official semantics)."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    if not changes:
        raise HTTPException(status_code=400, detail="Request body cannot be empty")
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM qr_crons WHERE cron_id = %(id)s AND {_owned(owner)} FOR UPDATE",
            {"id": cron_id, "owner": owner})
        row = await cursor.fetchone()
        if row is None:
            raise not_found(cron_id)
        schedule = body.schedule or row["schedule"]
        timezone = body.timezone if "timezone" in changes else row["timezone"]
        now = datetime.now(UTC)
        due = row["next_run_date"]
        if "schedule" in changes or "timezone" in changes:
            due = next_run_date(schedule, now, timezone)
        run_changes = {k: v for k, v in changes.items() if k not in SCHEDULE_FIELDS}
        payload = with_cron_id({**row["payload"], **run_changes, "assistant_id": row["payload"].get("assistant_id")},
                               cron_id)
        metadata = {**row["metadata"], **(body.metadata or {})}
        cursor = await conn.execute(
            f"UPDATE qr_crons SET schedule = %s, timezone = %s, end_time = %s, enabled = %s, "
            f"on_run_completed = %s, payload = %s, metadata = %s, next_run_date = %s, updated_at = %s "
            f"WHERE cron_id = %s RETURNING {_COLUMNS}",
            (schedule, timezone, body.end_time if "end_time" in changes else row["end_time"],
             row["enabled"] if body.enabled is None else body.enabled,
             body.on_run_completed if row["thread_id"] is None and body.on_run_completed else row["on_run_completed"],
             Jsonb(payload), Jsonb(metadata), due, now, cron_id))
        return await cursor.fetchone()


def _where(body: CronSearch | CronCount, assistant_id: str | None, owner: str | None) -> tuple[str, dict]:
    clauses, params = [_owned(owner)], {"owner": owner}
    if assistant_id is not None:
        clauses.append("assistant_id = %(assistant_id)s")
        params["assistant_id"] = assistant_id
    if body.thread_id is not None:
        clauses.append("thread_id = %(thread_id)s")
        params["thread_id"] = body.thread_id
    if isinstance(body, CronSearch) and body.enabled is not None:
        clauses.append("enabled = %(enabled)s")
        params["enabled"] = body.enabled
    if body.metadata:
        clauses.append("metadata @> %(metadata)s")
        params["metadata"] = Jsonb(body.metadata)
    return " AND ".join(clauses), params


async def search(pool: AsyncConnectionPool, body: CronSearch, assistant_id: str | None,
                 owner: str | None) -> tuple[list[dict], int | None]:
    """One page of crons, and the offset of the next page (None on the last)."""
    where, params = _where(body, assistant_id, owner)
    order = "ASC" if (body.sort_order or "desc").lower() == "asc" else "DESC"
    params.update(limit=body.limit + 1, offset=body.offset)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM qr_crons WHERE {where} ORDER BY {body.sort_by or 'created_at'} {order}, "
            f"cron_id LIMIT %(limit)s OFFSET %(offset)s", params)
        rows = await cursor.fetchall()
    next_offset = body.offset + body.limit if len(rows) > body.limit else None
    rows = rows[:body.limit]
    if body.select:
        rows = [{k: row[k] for k in body.select} for row in rows]
    return rows, next_offset


async def count(pool: AsyncConnectionPool, body: CronCount, assistant_id: str | None, owner: str | None) -> int:
    where, params = _where(body, assistant_id, owner)
    async with pool.connection() as conn:
        cursor = await conn.execute(f"SELECT count(*) AS n FROM qr_crons WHERE {where}", params)
        return (await cursor.fetchone())["n"]


# --- the scheduler's side ---------------------------------------------------------------------
@asynccontextmanager
async def claim_due(pool: AsyncConnectionPool, limit: int) -> AsyncIterator[tuple[AsyncConnection, list[dict]]]:
    """Lock up to ``limit`` due crons until the block ends; other replicas skip them meanwhile."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            "SELECT cron_id, assistant_id, thread_id, owner, schedule, timezone, end_time, payload, metadata, "
            "on_run_completed, next_run_date FROM qr_crons "
            "WHERE enabled AND next_run_date <= now() AND (end_time IS NULL OR next_run_date <= end_time) "
            "ORDER BY next_run_date LIMIT %s FOR UPDATE SKIP LOCKED", (limit,))
        yield conn, await cursor.fetchall()


async def record_fire(conn: AsyncConnection, cron: dict, *, run_id: str | None, error: str | None,
                      delete: bool = False) -> None:
    """After a fire: the next due time (from now: missed fires collapse into one), the run made."""
    if delete:
        await conn.execute("DELETE FROM qr_crons WHERE cron_id = %s", (cron["cron_id"],))
        return
    now = datetime.now(UTC)
    await conn.execute(
        "UPDATE qr_crons SET next_run_date = %s, last_fired_at = %s, last_run_id = coalesce(%s, last_run_id), "
        "last_error = %s WHERE cron_id = %s",
        (next_run_date(cron["schedule"], now, cron["timezone"]), now, run_id, error, cron["cron_id"]))


async def seconds_until_next_due(pool: AsyncConnectionPool) -> float | None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT extract(epoch FROM min(next_run_date) - now()) AS s FROM qr_crons "
            "WHERE enabled AND (end_time IS NULL OR next_run_date <= end_time)")
        row = await cursor.fetchone()
    return None if row["s"] is None else max(0.0, float(row["s"]))
