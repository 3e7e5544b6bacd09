"""Runs routes of the LangGraph Agent Server API: on a thread, and stateless."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from serve_app.auth import current_owner
from serve_app.context import AppContext
from serve_app.errors import Invalid, NotFound
from serve_app.records import runs as run_records
from serve_app.records import threads as thread_records
from serve_app.responses import json_response, raw_json_response
from serve_app.runs import service
from serve_app.runs.sse import run_location_headers, stream_response
from serve_app.schemas import STREAM_MODES, RunBatchItem, RunCreate, RunsCancel

router = APIRouter(tags=["Runs"])


def ctx(request: Request) -> AppContext:
    return request.app.state.context


def check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid(f"Invalid {what} ID: must be a UUID") from None


async def _create(context: AppContext, body: RunCreate, thread_id: str | None, owner: str | None) -> dict:
    return await service.create_run(context, body, thread_id=thread_id, owner=owner)


def _stream(context: AppContext, run: dict, body: RunCreate, *, stateless: bool = False) -> Response:
    return stream_response(context, run, resumable=body.stream_resumable, start=True,
                           cancel_on_disconnect=body.on_disconnect == "cancel",
                           headers=run_location_headers(run, "stream", stateless=stateless))


async def _wait(context: AppContext, run: dict, body: RunCreate, request: Request) -> Response:
    # The run was created with push=False: this call starts it and answers with its output.
    if body.on_disconnect != "cancel":
        output = await service.final_output_json(context, run, start=True)
        return raw_json_response(output, headers=run_location_headers(run, "join"))
    # Serve cancels a request whose client disconnects, but not always: with Serve's Python proxy
    # its cancel of the replica's call now and then never reached this handler (the request then
    # waited out its run; 2 of 2 ten-round runs of the lifecycle test), so the client's departure
    # is also watched here, on the request's own ASGI channel.
    waiting = asyncio.ensure_future(service.final_output_json(context, run, start=True))
    watching = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait((waiting, watching), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        waiting.cancel()
        watching.cancel()
        service.detached(service.cancel_run(context, str(run["run_id"]), run["executor"]))
        raise
    if not waiting.done():
        waiting.cancel()
        service.detached(service.cancel_run(context, str(run["run_id"]), run["executor"]))
        return Response(status_code=499)  # nobody reads it: the client has gone
    watching.cancel()
    return raw_json_response(waiting.result(), headers=run_location_headers(run, "join"))


async def _client_gone(request: Request) -> None:
    """Returns when the request's client disconnects (its body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --- on a thread -----------------------------------------------------------------------------------
@router.post("/threads/{thread_id}/runs", summary="Create a background run")
async def create_run(thread_id: str, body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    run = await _create(ctx(request), body, check_uuid(thread_id, "thread"), owner)
    return json_response(run_records.public(run), headers={"Content-Location": run_location_headers(run, "")["Content-Location"]})


@router.post("/threads/{thread_id}/runs/stream", summary="Create a run and stream its output")
async def stream_run(thread_id: str, body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.create_run_for_reply(context, body, thread_id=check_uuid(thread_id, "thread"), owner=owner)
    return _stream(context, run, body)


@router.post("/threads/{thread_id}/runs/wait", summary="Create a run and wait for its output")
async def wait_run(thread_id: str, body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.create_run_for_reply(context, body, thread_id=check_uuid(thread_id, "thread"), owner=owner)
    return await _wait(context, run, body, request)


@router.get("/threads/{thread_id}/runs", summary="List a thread's runs")
async def list_runs(thread_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                    offset: Annotated[int, Query(ge=0)] = 0,
                    status: Literal["pending", "running", "error", "success", "timeout", "interrupted"] | None = None,
                    select: Annotated[list[str] | None, Query()] = None, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    pool = await context.ready()
    thread_id = check_uuid(thread_id, "thread")
    if not await thread_records.exists(pool, thread_id, owner):
        raise NotFound(f"Thread with ID {thread_id} not found")
    return json_response(await run_records.list_for_thread(pool, thread_id, owner, limit=limit, offset=offset,
                                                           status=status, select=select))


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get a run")
async def get_run(thread_id: str, run_id: str, request: Request, owner: str | None = Depends(current_owner)):
    run = await service.get_run_for(ctx(request), check_uuid(thread_id, "thread"), check_uuid(run_id, "run"), owner)
    return json_response(run_records.public(run))


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run and return the thread's values")
async def join_run(thread_id: str, run_id: str, request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.get_run_for(context, check_uuid(thread_id, "thread"), check_uuid(run_id, "run"), owner)
    if run["status"] in ("pending", "running"):
        await service.final_output(context, run, join=True)
    return json_response(await service.thread_output(context, str(run["thread_id"])))


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream")
async def join_stream(thread_id: str, run_id: str, request: Request,
                      cancel_on_disconnect: bool = False, stream_mode: Annotated[list[str] | None, Query()] = None,
                      last_event_id: Annotated[str | None, Header()] = None, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.get_run_for(context, check_uuid(thread_id, "thread"), check_uuid(run_id, "run"), owner)
    modes = _parse_modes(stream_mode)
    resumable = bool(run["kwargs"].get("resumable"))
    if last_event_id is not None and last_event_id.strip().lstrip("-").isdigit():
        after = int(last_event_id)
    else:
        after = -1 if resumable else -2
    return stream_response(context, run, after=after, modes=modes, resumable=resumable,
                           cancel_on_disconnect=cancel_on_disconnect, headers=run_location_headers(run, "stream"),
                           # As the official server, which replays the run's stored events: its
                           # metadata event only when the join starts from the run's beginning.
                           with_metadata=resumable and after == -1)


def _parse_modes(stream_mode: list[str] | None) -> list[str] | None:
    if not stream_mode:
        return None
    modes: list[str] = []
    for item in stream_mode:
        if not item:
            continue
        if item.startswith("["):
            import orjson

            try:
                modes += list(orjson.loads(item))
            except orjson.JSONDecodeError:
                raise Invalid(f"Invalid stream mode: {item}") from None
        else:
            modes.append(item)
    if not modes:
        return None
    for mode in modes:
        if mode not in STREAM_MODES:
            raise Invalid(f"Invalid stream mode: {mode}")
    return modes


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", summary="Cancel a run")
async def cancel(thread_id: str, run_id: str, request: Request, wait: bool = False,
                 action: Literal["interrupt", "rollback"] = "interrupt", owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.get_run_for(context, check_uuid(thread_id, "thread"), check_uuid(run_id, "run"), owner)
    if run["status"] not in ("pending", "running"):
        raise NotFound("No matching runs to cancel. Please verify the thread ID and run IDs are correct, and the "
                       "runs haven't been deleted or completed.")
    await service.cancel_run(context, str(run["run_id"]), run["executor"], action)
    if not wait:
        return Response(status_code=202)
    return json_response(await service.thread_output(context, str(run["thread_id"])),
                         headers=run_location_headers(run, "join"))


@router.delete("/threads/{thread_id}/runs/{run_id}", summary="Delete a finished run")
async def delete_run(thread_id: str, run_id: str, request: Request, owner: str | None = Depends(current_owner)):
    pool = await ctx(request).ready()
    await run_records.delete(pool, check_uuid(thread_id, "thread"), check_uuid(run_id, "run"), owner)
    return Response(status_code=204)


# --- stateless ---------------------------------------------------------------------------------------
@router.post("/runs", summary="Create a stateless background run")
async def create_stateless(body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    run = await _create(ctx(request), body, None, owner)
    headers = {"Content-Location": run_location_headers(run, "", stateless=True)["Content-Location"]}
    return json_response(run_records.public(run), headers=headers)


@router.post("/runs/stream", summary="Create a stateless run and stream its output")
async def stream_stateless(body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.create_run_for_reply(context, body, thread_id=None, owner=owner)
    return _stream(context, run, body, stateless=True)


@router.post("/runs/wait", summary="Create a stateless run and wait for its output")
async def wait_stateless(body: RunCreate, request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    run = await service.create_run_for_reply(context, body, thread_id=None, owner=owner)
    return await _wait(context, run, body, request)


@router.post("/runs/batch", summary="Create many stateless background runs")
async def batch(body: list[RunBatchItem], request: Request, owner: str | None = Depends(current_owner)):
    context = ctx(request)
    runs = [run_records.public(await _create(context, item, None, owner)) for item in body]
    return json_response(runs)


@router.post("/runs/cancel", summary="Cancel runs by id, by thread, or by status")
async def cancel_many(body: RunsCancel, request: Request, action: Literal["interrupt", "rollback"] = "interrupt",
                      owner: str | None = Depends(current_owner)):
    context = ctx(request)
    pool = await context.ready()
    if body.status is not None:
        if body.thread_id or body.run_ids:
            raise Invalid("When providing a 'status', 'thread_id' and 'run_ids' must be omitted.")
        targets = await run_records.active_runs(pool, status=body.status, owner=owner)
    elif body.thread_id is not None and body.run_ids:
        targets = await run_records.active_runs(pool, thread_id=str(body.thread_id),
                                                run_ids=[str(r) for r in body.run_ids], owner=owner)
        if not targets:
            raise NotFound("No matching runs to cancel.")
    else:
        raise Invalid("Provide either 'status', or 'thread_id' with 'run_ids'.")
    for run in targets:
        await service.cancel_run(context, str(run["run_id"]), run["executor"], action)
    return Response(status_code=204)
