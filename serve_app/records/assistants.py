"""Assistants and their versions in Postgres."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from runs.graph_registry import default_assistant_id
from serve_app.errors import BadRequest, Conflict, NotFound
from serve_app.records import owner_filter, page_sql, select_fields
from serve_app.schemas import AssistantCount, AssistantCreate, AssistantPatch, AssistantSearch

FIELDS = ("assistant_id", "graph_id", "config", "context", "metadata", "name", "created_at", "updated_at",
          "version", "description")
_COLUMNS = ", ".join(FIELDS)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in FIELDS}


def _synced(config: dict | None, context: dict | None) -> tuple[dict, dict]:
    """As the official server keeps them: context mirrors config.configurable, or configurable
    mirrors the context when only a context is given; both at once is refused."""
    config, context = dict(config or {}), dict(context or {})
    if config.get("configurable") and context:
        raise BadRequest("Cannot specify both configurable and context. Prefer setting context alone.")
    if config.get("configurable"):
        return config, dict(config["configurable"])
    if context:
        config["configurable"] = context
    return config, context


async def ensure_graph_assistants(pool: AsyncConnectionPool, graph_ids: list[str]) -> None:
    """Every registered graph has its default assistant (same id as the official server's), and
    the default assistants of graphs no longer registered (removed from the graphs file) are
    gone rather than left to fail with "not registered". Assistants a client created are kept."""
    async with pool.connection() as conn:
        await conn.execute(
            "DELETE FROM qr_assistants WHERE metadata->>'created_by' = 'system' AND owner IS NULL "
            "AND NOT (graph_id = ANY(%s))", (list(graph_ids),))
        for graph_id in graph_ids:
            assistant_id = default_assistant_id(graph_id)
            cursor = await conn.execute(
                "INSERT INTO qr_assistants (assistant_id, graph_id, name, metadata) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (assistant_id) DO NOTHING RETURNING assistant_id",
                (assistant_id, graph_id, graph_id, Jsonb({"created_by": "system"})),
            )
            if await cursor.fetchone() is not None:
                await conn.execute(
                    "INSERT INTO qr_assistant_versions (assistant_id, version, graph_id, name, metadata) "
                    "VALUES (%s, 1, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (assistant_id, graph_id, graph_id, Jsonb({"created_by": "system"})),
                )


async def create(pool: AsyncConnectionPool, body: AssistantCreate, owner: str | None) -> dict:
    assistant_id = body.assistant_id or uuid.uuid4()
    config, context = _synced(body.config, body.context)
    name = body.name or "Untitled"
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            f"INSERT INTO qr_assistants (assistant_id, graph_id, name, description, config, context, metadata, owner) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (assistant_id) DO NOTHING RETURNING {_COLUMNS}",
            (assistant_id, body.graph_id, name, body.description, Jsonb(config), Jsonb(context),
             Jsonb(body.metadata), owner),
        )
        row = await cursor.fetchone()
        if row is None:
            if body.if_exists == "do_nothing":
                existing = await get(pool, str(assistant_id), owner)
                return existing
            raise Conflict(f"Assistant {assistant_id} already exists")
        await conn.execute(
            "INSERT INTO qr_assistant_versions (assistant_id, version, graph_id, name, description, config, "
            "context, metadata) VALUES (%s, 1, %s, %s, %s, %s, %s, %s)",
            (assistant_id, body.graph_id, name, body.description, Jsonb(config), Jsonb(context),
             Jsonb(body.metadata)),
        )
        return _public(row)


async def get(pool: AsyncConnectionPool, assistant_id: str, owner: str | None) -> dict:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT {_COLUMNS} FROM qr_assistants WHERE assistant_id = %(id)s AND "
            f"{owner_filter(owner, shared_rows=True)}",
            {"id": assistant_id, "owner": owner},
        )
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"Assistant {assistant_id} not found")
    return _public(row)


async def update(pool: AsyncConnectionPool, assistant_id: str, body: AssistantPatch, owner: str | None) -> dict:
    """A patch makes a new version (config/context replace, metadata merges) and makes it latest."""
    current = await get(pool, assistant_id, owner)
    if body.config is None and body.context is None:
        config, context = current["config"], current["context"]
    elif body.config is None:  # a new context replaces the configurable it mirrors
        config, context = _synced({k: v for k, v in current["config"].items() if k != "configurable"}, body.context)
    else:
        config, context = _synced(body.config, body.context)
    metadata = {**current["metadata"], **(body.metadata or {})}
    graph_id = body.graph_id or current["graph_id"]
    name = body.name if body.name is not None else current["name"]
    description = body.description if body.description is not None else current["description"]
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            "SELECT coalesce(max(version), 0) + 1 AS v FROM qr_assistant_versions WHERE assistant_id = %s",
            (assistant_id,))
        version = (await cursor.fetchone())["v"]
        await conn.execute(
            "INSERT INTO qr_assistant_versions (assistant_id, version, graph_id, name, description, config, "
            "context, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (assistant_id, version, graph_id, name, description, Jsonb(config), Jsonb(context), Jsonb(metadata)),
        )
        cursor = await conn.execute(
            f"UPDATE qr_assistants SET graph_id = %s, name = %s, description = %s, config = %s, context = %s, "
            f"metadata = %s, version = %s, updated_at = now() WHERE assistant_id = %s RETURNING {_COLUMNS}",
            (graph_id, name, description, Jsonb(config), Jsonb(context), Jsonb(metadata), version, assistant_id),
        )
        return _public(await cursor.fetchone())


async def delete(pool: AsyncConnectionPool, assistant_id: str, owner: str | None) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"DELETE FROM qr_assistants WHERE assistant_id = %(id)s AND {owner_filter(owner)} RETURNING 1",
            {"id": assistant_id, "owner": owner})
        if await cursor.fetchone() is None:
            raise NotFound(f"Assistant {assistant_id} not found")


def _where(body: AssistantSearch | AssistantCount, owner: str | None) -> tuple[str, dict[str, Any]]:
    clauses = [owner_filter(owner, shared_rows=True)]
    params: dict[str, Any] = {"owner": owner}
    if body.metadata:
        clauses.append("metadata @> %(metadata)s")
        params["metadata"] = Jsonb(body.metadata)
    if body.graph_id:
        clauses.append("graph_id = %(graph_id)s")
        params["graph_id"] = body.graph_id
    if body.name:
        clauses.append("name ILIKE %(name)s")
        params["name"] = f"%{body.name}%"
    return " AND ".join(clauses), params


async def search(pool: AsyncConnectionPool, body: AssistantSearch, owner: str | None) -> tuple[list[dict], int]:
    where, params = _where(body, owner)
    params.update(limit=body.limit, offset=body.offset)
    sql = (f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM qr_assistants WHERE {where}"
           + page_sql(body.sort_by, body.sort_order, set(FIELDS), "created_at"))
    async with pool.connection() as conn:
        rows = await (await conn.execute(sql, params)).fetchall()
    total = rows[0]["total"] if rows else 0
    return [select_fields(_public(r), body.select) for r in rows], total


async def count(pool: AsyncConnectionPool, body: AssistantCount, owner: str | None) -> int:
    where, params = _where(body, owner)
    async with pool.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) AS n FROM qr_assistants WHERE {where}", params)).fetchone()
    return row["n"]


async def versions(pool: AsyncConnectionPool, assistant_id: str, owner: str | None, *,
                   metadata: dict | None, limit: int, offset: int) -> list[dict]:
    await get(pool, assistant_id, owner)
    params: dict[str, Any] = {"id": assistant_id, "limit": limit, "offset": offset}
    extra = ""
    if metadata:
        extra = " AND metadata @> %(metadata)s"
        params["metadata"] = Jsonb(metadata)
    async with pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT assistant_id, graph_id, config, context, metadata, name, description, version, created_at "
            f"FROM qr_assistant_versions WHERE assistant_id = %(id)s{extra} "
            "ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s", params)).fetchall()
    return [dict(r) for r in rows]


async def set_latest(pool: AsyncConnectionPool, assistant_id: str, version: int, owner: str | None) -> dict:
    await get(pool, assistant_id, owner)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"UPDATE qr_assistants a SET graph_id = v.graph_id, name = v.name, description = v.description, "
            f"config = v.config, context = v.context, metadata = v.metadata, version = v.version, "
            f"updated_at = now() FROM qr_assistant_versions v "
            f"WHERE a.assistant_id = %s AND v.assistant_id = a.assistant_id AND v.version = %s "
            f"RETURNING {', '.join('a.' + f for f in FIELDS)}",
            (assistant_id, version))
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"Assistant {assistant_id} has no version {version}")
    return _public(row)
