"""Who owns a workspace, and the client of one the caller may use.

A workspace created with ``POST /workspaces`` has a row in ``qr_api_workspaces`` naming its
owner. The caller gets a workspace's client only if it owns it (or is an admin, which also
reaches the fabric's own workspaces, such as ``default``); otherwise it is a 404, as if the
workspace did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from psycopg.types.json import Jsonb

from actors.workspaces import EventBusSink
from quadracode_ray import NAMESPACE
from quadracode_ray.interfaces.workspace import WorkspaceInvalidRequest
from sandbox.actor import ACTOR_NAME_PREFIX
from sandbox.client import WorkspaceSandboxClient, existing_workspace, workspace_actor
from sandbox.models import validate_workspace_id
from serve_app.context import AppContext
from serve_app.errors import BadRequest, Conflict, NotFound
from serve_app.operator.access import Caller
from serve_app.operator.fabric import translated

_ROW_BY_ID = "SELECT workspace_id, owner, spec, created_at FROM qr_api_workspaces WHERE workspace_id = %s"


async def workspace_row(context: AppContext, workspace_id: str) -> dict[str, Any] | None:
    pool = await context.pool()
    async with pool.connection() as conn:
        return await (await conn.execute(_ROW_BY_ID, (workspace_id,))).fetchone()


async def workspace_rows(context: AppContext, owner: str | None) -> list[dict[str, Any]]:
    """Rows of ``owner`` (None: every row)."""
    pool = await context.pool()
    async with pool.connection() as conn:
        return await (await conn.execute(
            "SELECT workspace_id, owner, spec, created_at FROM qr_api_workspaces "
            "WHERE %(owner)s::text IS NULL OR owner = %(owner)s ORDER BY created_at", {"owner": owner})).fetchall()


class WorkspaceCapReached(Conflict):
    """Creating one more workspace would pass the installation's cap (settings.operator_max_workspaces)."""


async def claim_workspace(context: AppContext, workspace_id: str, owner: str | None,
                          spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The workspace's row, inserted for ``owner`` if there was none; and whether it was inserted.

    A new row only below the cap: every workspace is a container and a Ray actor (a worker process
    of ~100 MiB), so an unbounded client (a script's loop, a fuzzer) could exhaust its node. The
    count and the insert run under one transaction-scoped lock, so racing creates cannot pass it."""
    cap = context.settings.operator_max_workspaces
    pool = await context.pool()
    async with pool.connection() as conn, conn.transaction():
        existing = await (await conn.execute(_ROW_BY_ID, (workspace_id,))).fetchone()
        if existing is not None:
            return existing, False
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('qr_api_workspaces'))")
        count = (await (await conn.execute("SELECT count(*) AS n FROM qr_api_workspaces")).fetchone())["n"]
        if count >= cap:
            raise WorkspaceCapReached(f"the installation has {count} workspaces, its cap (operator_max_workspaces "
                                      f"= {cap}): delete one first")
        row = await (await conn.execute(
            "INSERT INTO qr_api_workspaces (workspace_id, owner, spec) VALUES (%s, %s, %s) "
            "ON CONFLICT (workspace_id) DO NOTHING RETURNING workspace_id, owner, spec, created_at",
            (workspace_id, owner, Jsonb(spec)))).fetchone()
    if row is not None:
        return row, True
    existing = await workspace_row(context, workspace_id)  # created meanwhile by another call
    if existing is None:  # and deleted meanwhile: try once more
        return await claim_workspace(context, workspace_id, owner, spec)
    return existing, False


async def forget_workspace(context: AppContext, workspace_id: str) -> None:
    pool = await context.pool()
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM qr_api_workspaces WHERE workspace_id = %s", (workspace_id,))


def checked_id(workspace_id: str) -> str:
    try:
        return validate_workspace_id(workspace_id)
    except WorkspaceInvalidRequest as exc:
        raise BadRequest(str(exc)) from None


def live_workspace_ids(context: AppContext) -> list[str]:
    """Workspaces of this installation whose sandbox actor exists (whoever made them)."""
    prefix = context.settings.actor_name_prefix + ACTOR_NAME_PREFIX
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(entry["name"][len(prefix):] for entry in names
                  if entry["namespace"] == NAMESPACE and entry["name"].startswith(prefix))


async def usable_row(context: AppContext, caller: Caller, workspace_id: str) -> dict[str, Any] | None:
    """The row of a workspace the caller may use, or None for one without a row (the fabric's own,
    such as ``default``: admins only); NotFound otherwise, as if it did not exist."""
    checked_id(workspace_id)
    row = await workspace_row(context, workspace_id)
    if row is not None and (caller.admin or row["owner"] == caller.owner):
        return row
    if row is None and caller.admin:
        return None
    raise NotFound(f"workspace {workspace_id!r} not found")


async def workspace_client(context: AppContext, caller: Caller, workspace_id: str) -> WorkspaceSandboxClient:
    """The client of a workspace the caller may use; NotFound otherwise (nothing is created)."""
    row = await usable_row(context, caller, workspace_id)
    # Finding (or placing) the actor asks the GCS and reads the placement records: blocking calls,
    # run off the event loop the replica's other requests share.
    with translated():
        if row is None:
            return await asyncio.to_thread(existing_workspace, workspace_id, context.settings)
        # Its actor is re-made if it is gone (it re-attaches to the container by label).
        handle = await asyncio.to_thread(workspace_actor, workspace_id, context.settings,
                                         event_sink=EventBusSink(context.settings))
        return WorkspaceSandboxClient(handle, workspace_id, context.settings)
