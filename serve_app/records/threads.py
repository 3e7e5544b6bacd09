"""Threads in Postgres (their state lives in LangGraph's checkpoint tables)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from serve_app.errors import Conflict, NotFound
from serve_app.records import owner_filter, page_sql, select_fields
from serve_app.schemas import ThreadCount, ThreadSearch

FIELDS = ("thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "status", "config",
          "values", "interrupts", "error")
_COLUMNS = ", ".join(f'"{f}"' for f in FIELDS)
# As the official server: a created thread is answered without error/interrupts, a copy also
# without values (its state is read through the state routes).
CREATED_FIELDS = tuple(f for f in FIELDS if f not in ("error", "interrupts"))
COPIED_FIELDS = tuple(f for f in CREATED_FIELDS if f != "values")


def public(row: dict[str, Any], fields: tuple[str, ...] = FIELDS) -> dict[str, Any]:
    return {k: row[k] for k in fields}


async def insert(conn: AsyncConnection, thread_id: Any, metadata: dict, owner: str | None, *,
                 temporary: bool = False) -> dict | None:
    cursor = await conn.execute(
        f"INSERT INTO qr_threads (thread_id, metadata, owner, temporary) VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT (thread_id) DO NOTHING RETURNING {_COLUMNS}",
        (thread_id, Jsonb(metadata), owner, temporary))
    return await cursor.fetchone()


async def create(pool: AsyncConnectionPool, thread_id: uuid.UUID | None, metadata: dict, if_exists: str,
                 owner: str | None) -> tuple[dict, bool]:
    """Returns (thread, created)."""
    thread_id = thread_id or uuid.uuid4()
    async with pool.connection() as conn:
        row = await insert(conn, thread_id, metadata, owner)
    if row is not None:
        return public(row, CREATED_FIELDS), True
    if if_exists == "do_nothing":
        return public(await get(pool, str(thread_id), owner), CREATED_FIELDS), False
    raise Conflict(f"Thread with ID {thread_id} already exists")


async def get(pool: AsyncConnectionPool, thread_id: str, owner: str | None) -> dict:
    async with pool.connection() as conn:
        row = await (await conn.execute(
            f"SELECT {_COLUMNS} FROM qr_threads WHERE thread_id = %(id)s AND NOT temporary AND {owner_filter(owner)}",
            {"id": thread_id, "owner": owner})).fetchone()
    if row is None:
        raise NotFound(f"Thread with ID {thread_id} not found")
    return public(row)


async def exists(pool: AsyncConnectionPool, thread_id: str, owner: str | None) -> bool:
    async with pool.connection() as conn:
        row = await (await conn.execute(
            f"SELECT 1 FROM qr_threads WHERE thread_id = %(id)s AND {owner_filter(owner)}",
            {"id": thread_id, "owner": owner})).fetchone()
    return row is not None


async def patch(pool: AsyncConnectionPool, thread_id: str, metadata: dict | None, owner: str | None) -> dict:
    async with pool.connection() as conn:
        row = await (await conn.execute(
            f"UPDATE qr_threads SET metadata = metadata || %(metadata)s, updated_at = now() "
            f"WHERE thread_id = %(id)s AND {owner_filter(owner)} RETURNING {_COLUMNS}",
            {"id": thread_id, "owner": owner, "metadata": Jsonb(metadata or {})})).fetchone()
    if row is None:
        raise NotFound(f"Thread with ID {thread_id} not found")
    return public(row)


async def delete_rows(pool: AsyncConnectionPool, thread_ids: list[str], owner: str | None) -> list[str]:
    """Delete the threads (the owner's) and, as the official server, the crons bound to them."""
    async with pool.connection() as conn, conn.transaction():
        rows = await (await conn.execute(
            f"DELETE FROM qr_threads WHERE thread_id = ANY(%(ids)s::uuid[]) AND {owner_filter(owner)} "
            "RETURNING thread_id", {"ids": thread_ids, "owner": owner})).fetchall()
        deleted = [r["thread_id"] for r in rows]
        if deleted:
            await conn.execute("DELETE FROM qr_crons WHERE thread_id = ANY(%s::uuid[])", (deleted,))
    return [str(thread_id) for thread_id in deleted]


def _where(body: ThreadSearch | ThreadCount, owner: str | None) -> tuple[str, dict[str, Any]]:
    clauses = ["NOT temporary", owner_filter(owner)]
    params: dict[str, Any] = {"owner": owner}
    if body.metadata:
        clauses.append("metadata @> %(metadata)s")
        params["metadata"] = Jsonb(body.metadata)
    if body.values:
        clauses.append('"values" @> %(values)s')
        params["values"] = Jsonb(body.values)
    if body.status:
        clauses.append("status = %(status)s")
        params["status"] = body.status
    if isinstance(body, ThreadSearch) and body.ids:
        clauses.append("thread_id = ANY(%(ids)s)")
        params["ids"] = body.ids
    return " AND ".join(clauses), params


async def search(pool: AsyncConnectionPool, body: ThreadSearch, owner: str | None) -> tuple[list[dict], int]:
    where, params = _where(body, owner)
    params.update(limit=body.limit, offset=body.offset)
    sql = (f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM qr_threads WHERE {where}"
           + page_sql(body.sort_by, body.sort_order, {"thread_id", "status", "created_at", "updated_at",
                                                       "state_updated_at"}, "created_at"))
    async with pool.connection() as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    total = rows[0]["total"] if rows else 0
    out = []
    for row in rows:
        item = select_fields(public(row), body.select)
        if body.extract:
            item["extracted"] = {key: _extract(row["values"], path) for key, path in body.extract.items()}
        out.append(item)
    return out, total


def _extract(values: Any, path: str) -> Any:
    current = values
    for part in path.removeprefix("values.").split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
    return current


async def count(pool: AsyncConnectionPool, body: ThreadCount, owner: str | None) -> int:
    where, params = _where(body, owner)
    async with pool.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) AS n FROM qr_threads WHERE {where}", params)).fetchone()
    return row["n"]


async def set_state_columns(pool: AsyncConnectionPool, thread_id: str, values: Any, interrupts: dict,
                            status: str | None = None) -> None:
    """Mirror a state change made outside a run (update_state) into the thread row."""
    async with pool.connection() as conn:
        await conn.execute(
            'UPDATE qr_threads SET "values" = %s, interrupts = %s, state_updated_at = now(), updated_at = now(), '
            "status = CASE WHEN status = 'busy' THEN status ELSE coalesce(%s, status) END WHERE thread_id = %s",
            (Jsonb(values) if values is not None else None, Jsonb(interrupts), status, thread_id))


async def copy_checkpoints(conn: AsyncConnection, source: str, target: str) -> None:
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
        cursor = await conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = "
            "current_schema() ORDER BY ordinal_position", (table,))
        columns = [r["column_name"] for r in await cursor.fetchall()]
        others = ", ".join(f'"{c}"' for c in columns if c != "thread_id")
        await conn.execute(
            f'INSERT INTO {table} (thread_id, {others}) SELECT %s, {others} FROM {table} WHERE thread_id = %s',
            (target, source))
