"""Crons routes of the LangGraph Agent Server API: stateless and per-thread schedules.

The router's lifespan runs this replica's cron scheduler, so including the router is all
the app needs to fire crons.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from serve_app.auth import current_owner
from serve_app.crons import repository, targets
from serve_app.crons.models import (
    Cron,
    CronCount,
    CronCreate,
    CronPatch,
    CronSearch,
    ThreadCronCreate,
)
from serve_app.crons.scheduler import CronScheduler
from serve_app.runs.service import resolve_assistant_id

log = logging.getLogger(__name__)


@asynccontextmanager
async def cron_scheduler_lifespan(app: FastAPI) -> AsyncIterator[None]:
    context = app.state.context
    scheduler = CronScheduler(context.pool, lambda cron: targets.fire(context, cron),
                              poll_interval_s=context.settings.cron_poll_interval_s)
    app.state.cron_scheduler = scheduler
    scheduler.start()
    try:
        yield
    finally:
        await scheduler.stop()


router = APIRouter(tags=["Crons"], lifespan=cron_scheduler_lifespan)
Owner = Annotated[str | None, Depends(current_owner)]


def _wake(request: Request) -> None:
    scheduler = getattr(request.app.state, "cron_scheduler", None)
    if scheduler is not None:
        scheduler.wake()


async def _assistant_filter(request: Request, value: str | None) -> str | None:
    if value is None:
        return None
    return resolve_assistant_id(request.app.state.context, value)


@router.post("/runs/crons", response_model=Cron, summary="Create a cron (each fire is a stateless run)")
async def create_cron(body: CronCreate, request: Request, owner: Owner) -> dict:
    context = request.app.state.context
    assistant_id = await targets.resolve_assistant(context, body.assistant_id, owner)
    row = await repository.insert(await context.pool(), body, assistant_id=assistant_id, thread_id=None, owner=owner)
    _wake(request)
    return row


@router.post("/threads/{thread_id}/runs/crons", response_model=Cron,
             summary="Create a cron whose runs go to one thread")
async def create_thread_cron(thread_id: UUID, body: ThreadCronCreate, request: Request, owner: Owner) -> dict:
    context = request.app.state.context
    assistant_id = await targets.resolve_assistant(context, body.assistant_id, owner)
    await targets.check_thread(context, str(thread_id), owner)
    row = await repository.insert(await context.pool(), CronCreate(**body.model_dump(exclude_unset=True)),
                                  assistant_id=assistant_id, thread_id=str(thread_id), owner=owner)
    _wake(request)
    return row


@router.post("/runs/crons/search", summary="Search crons",
             responses={200: {"model": list[Cron],
                              "description": "Crons (only the `select`ed fields when given); "
                                             "X-Pagination-Next names the next page's offset"}})
async def search_crons(body: CronSearch, request: Request, owner: Owner) -> JSONResponse:
    rows, next_offset = await repository.search(
        await request.app.state.context.pool(), body, await _assistant_filter(request, body.assistant_id), owner)
    headers = ({"X-Pagination-Total": str(body.offset + len(rows))} if next_offset is None
               else {"X-Pagination-Total": str(next_offset + 1), "X-Pagination-Next": str(next_offset)})
    return JSONResponse(jsonable_encoder(rows), headers=headers)


@router.post("/runs/crons/count", response_model=int, summary="Count crons")
async def count_crons(body: CronCount, request: Request, owner: Owner) -> int:
    return await repository.count(await request.app.state.context.pool(), body,
                                  await _assistant_filter(request, body.assistant_id), owner)


@router.get("/runs/crons/{cron_id}", response_model=Cron, summary="Get a cron")
async def get_cron(cron_id: UUID, request: Request, owner: Owner) -> dict:
    return await repository.get(await request.app.state.context.pool(), str(cron_id), owner)


@router.patch("/runs/crons/{cron_id}", response_model=Cron, summary="Update a cron")
async def patch_cron(cron_id: UUID, body: CronPatch, request: Request, owner: Owner) -> dict:
    row = await repository.update(await request.app.state.context.pool(), str(cron_id), body, owner)
    _wake(request)
    return row


@router.delete("/runs/crons/{cron_id}", status_code=204, response_class=Response, summary="Delete a cron")
async def delete_cron(cron_id: UUID, request: Request, owner: Owner) -> Response:
    await repository.delete(await request.app.state.context.pool(), str(cron_id), owner)
    return Response(status_code=204)
