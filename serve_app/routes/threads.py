"""Threads routes of the LangGraph Agent Server API."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from psycopg.types.json import Jsonb

from serve_app import thread_state
from serve_app.auth import current_owner
from serve_app.context import AppContext
from serve_app.errors import Conflict, Invalid, NotFound
from serve_app.records import runs as run_records
from serve_app.records import threads as thread_records
from serve_app.responses import json_response
from serve_app.routes.runs import check_uuid
from serve_app.runs import service
from serve_app.runs.thread_follow import publish_state_update
from serve_app.schemas import (
    ThreadCount,
    ThreadCreate,
    ThreadHistory,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateCheckpoint,
    ThreadStateUpdate,
)

router = APIRouter(tags=["Threads"])
Owner = Annotated[str | None, Depends(current_owner)]


def ctx(request: Request) -> AppContext:
    return request.app.state.context


def _pagination(total: int, offset: int, count: int) -> dict[str, str]:
    headers = {"X-Pagination-Total": str(total)}
    if offset + count < total:
        headers["X-Pagination-Next"] = str(offset + count)
    return headers


@router.post("/threads", summary="Create a thread")
async def create_thread(body: ThreadCreate, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    metadata = dict(body.metadata)
    if body.graph_id:
        if body.graph_id not in context.graphs.entries:
            raise Invalid(f"Graph '{body.graph_id}' is not registered")
        metadata["graph_id"] = body.graph_id
    thread, created = await thread_records.create(pool, body.thread_id, metadata, body.if_exists, owner)
    if created and body.supersteps:
        if not metadata.get("graph_id"):
            raise Invalid("supersteps need graph_id (the graph whose state they update)")
        for step in body.supersteps:
            for update in step.updates:
                await thread_state.update_state(context, str(thread["thread_id"]), owner, values=update.values,
                                                as_node=update.as_node, checkpoint=None)
        await _state_updated(context, str(thread["thread_id"]), owner)
        thread = thread_records.public(await thread_records.get(pool, str(thread["thread_id"]), owner),
                                       thread_records.CREATED_FIELDS)
    return json_response(thread)


@router.post("/threads/search", summary="Search threads")
async def search_threads(body: ThreadSearch, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    items, total = await thread_records.search(pool, body, owner)
    return json_response(items, headers=_pagination(total, body.offset, len(items)))


@router.post("/threads/count", summary="Count threads")
async def count_threads(body: ThreadCount, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    return json_response(await thread_records.count(pool, body, owner))


@router.post("/threads/prune", summary="Delete threads, or all but their latest checkpoint")
async def prune_threads(body: ThreadPrune, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    ids = [str(t) for t in body.thread_ids]
    if body.strategy == "delete":
        pruned = 0
        for thread_id in ids:
            if await _delete_thread(context, thread_id, owner, missing_ok=True):
                pruned += 1
        return json_response({"pruned_count": pruned})
    pruned = 0
    async with pool.connection() as conn:
        for thread_id in ids:
            if not await thread_records.exists(pool, thread_id, owner):
                continue
            cursor = await conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_id <> ("
                "SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '') "
                "AND checkpoint_ns = '' RETURNING checkpoint_id", (thread_id, thread_id))
            removed = [r["checkpoint_id"] for r in await cursor.fetchall()]
            if removed:
                await conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = ANY(%s)",
                                   (thread_id, removed))
            pruned += 1
    return json_response({"pruned_count": pruned})


@router.get("/threads/{thread_id}", summary="Get a thread")
async def get_thread(thread_id: str, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    return json_response(await thread_records.get(pool, check_uuid(thread_id, "thread"), owner))


@router.patch("/threads/{thread_id}", summary="Update a thread's metadata")
async def patch_thread(thread_id: str, body: ThreadPatch, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    return json_response(await thread_records.patch(pool, check_uuid(thread_id, "thread"), body.metadata, owner))


async def _delete_thread(context: AppContext, thread_id: str, owner: str | None, *, missing_ok: bool = False) -> bool:
    pool = await context.ready()
    if not await thread_records.exists(pool, thread_id, owner):
        if missing_ok:
            return False
        raise NotFound(f"Thread with ID {thread_id} not found")
    for run in await run_records.active_runs(pool, thread_id=thread_id, owner=owner):
        await service.cancel_run(context, str(run["run_id"]), run["executor"], "interrupt")
    deleted = await thread_records.delete_rows(pool, [thread_id], owner)
    await context.saver.adelete_thread(thread_id)
    return bool(deleted)


@router.delete("/threads/{thread_id}", summary="Delete a thread, its runs and its checkpoints")
async def delete_thread(thread_id: str, request: Request, owner: Owner):
    await _delete_thread(ctx(request), check_uuid(thread_id, "thread"), owner)
    return Response(status_code=204)


@router.post("/threads/{thread_id}/copy", summary="Copy a thread with its checkpoints")
async def copy_thread(thread_id: str, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    source = await thread_records.get(pool, check_uuid(thread_id, "thread"), owner)
    if source["status"] == "busy":
        raise Conflict(f"Thread {thread_id} is busy with a run; copy it when the run ends")
    new_id = str(uuid.uuid4())
    async with pool.connection() as conn, conn.transaction():
        row = await thread_records.insert(conn, new_id, source["metadata"], owner)
        await conn.execute(
            'UPDATE qr_threads SET "values" = %s, interrupts = %s, error = %s, status = %s WHERE thread_id = %s',
            (Jsonb(source["values"]) if source["values"] is not None else None,
             Jsonb(source["interrupts"] or {}),
             Jsonb(source["error"]) if source["error"] is not None else None,
             source["status"], new_id))
        await thread_records.copy_checkpoints(conn, str(source["thread_id"]), new_id)
    assert row is not None
    return json_response(thread_records.public(await thread_records.get(pool, new_id, owner),
                                               thread_records.COPIED_FIELDS))


@router.get("/threads/{thread_id}/state", summary="The thread's current state")
async def get_state(thread_id: str, request: Request, owner: Owner, subgraphs: bool = False):
    return json_response(await thread_state.get_state(ctx(request), check_uuid(thread_id, "thread"), owner,
                                                      subgraphs=subgraphs))


async def _state_updated(context: AppContext, thread_id: str, owner: str | None) -> None:
    """Tell the thread's watchers (stream mode state_update) its new state, as the official server."""
    await publish_state_update(context, thread_id, await thread_state.get_state(context, thread_id, owner))


@router.post("/threads/{thread_id}/state", summary="Update the thread's state (as a node)")
async def update_state(thread_id: str, body: ThreadStateUpdate, request: Request, owner: Owner):
    checkpoint = body.checkpoint.model_dump(exclude_none=True) if body.checkpoint else None
    if body.checkpoint_id:
        checkpoint = {**(checkpoint or {}), "checkpoint_id": body.checkpoint_id}
    context, thread_id = ctx(request), check_uuid(thread_id, "thread")
    result = await thread_state.update_state(context, thread_id, owner, values=body.values, as_node=body.as_node,
                                             checkpoint=checkpoint)
    await _state_updated(context, thread_id, owner)
    return json_response(result)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", summary="The thread's state at a checkpoint")
async def get_state_at(thread_id: str, checkpoint_id: str, request: Request, owner: Owner, subgraphs: bool = False):
    return json_response(await thread_state.get_state(
        ctx(request), check_uuid(thread_id, "thread"), owner, checkpoint={"checkpoint_id": checkpoint_id},
        subgraphs=subgraphs))


@router.post("/threads/{thread_id}/state/checkpoint", summary="The thread's state at a checkpoint")
async def post_state_at(thread_id: str, body: ThreadStateCheckpoint, request: Request, owner: Owner):
    return json_response(await thread_state.get_state(
        ctx(request), check_uuid(thread_id, "thread"), owner,
        checkpoint=body.checkpoint.model_dump(exclude_none=True), subgraphs=body.subgraphs))


@router.get("/threads/{thread_id}/history", summary="The thread's past states, newest first")
async def get_history(thread_id: str, request: Request, owner: Owner,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 10, before: str | None = None):
    return json_response(await thread_state.history(
        ctx(request), check_uuid(thread_id, "thread"), owner, limit=limit,
        before={"checkpoint_id": before} if before else None, metadata=None, checkpoint=None))


@router.post("/threads/{thread_id}/history", summary="The thread's past states, newest first")
async def post_history(thread_id: str, body: ThreadHistory, request: Request, owner: Owner):
    before = body.before
    if isinstance(before, str):
        before = {"checkpoint_id": before}
    elif before is not None:
        before = before.model_dump(exclude_none=True)
    return json_response(await thread_state.history(
        ctx(request), check_uuid(thread_id, "thread"), owner, limit=body.limit, before=before,
        metadata=body.metadata, checkpoint=body.checkpoint.model_dump(exclude_none=True) if body.checkpoint else None))
