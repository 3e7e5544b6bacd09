"""``GET /threads/{thread_id}/stream``: watch a thread (its active run and every later run) as
the official server's join_thread_stream; how it follows runs is in serve_app/runs/thread_follow.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from serve_app.auth import current_owner
from serve_app.errors import NotFound
from serve_app.records import threads as thread_records
from serve_app.routes.runs import check_uuid
from serve_app.runs.sse import SSE_HEADERS, with_heartbeats
from serve_app.runs.thread_follow import ThreadFollower, parse_last_event_id, parse_thread_modes
from serve_app.runs.thread_watch import ThreadWatchHub

router = APIRouter(tags=["Threads"])


def _watch_hub(request: Request) -> ThreadWatchHub:
    """The replica's one hub (one LISTEN connection) for all its watchers."""
    hub = getattr(request.app.state, "thread_watch_hub", None)
    if hub is None:
        hub = request.app.state.thread_watch_hub = ThreadWatchHub(request.app.state.context)
    return hub


@router.get("/threads/{thread_id}/stream", summary="Join a thread's stream: its runs' events until the client leaves")
async def join_thread_stream(thread_id: str, request: Request,
                             stream_mode: Annotated[list[str] | None, Query()] = None,
                             stream_modes: Annotated[list[str] | None, Query()] = None,
                             last_event_id: Annotated[str | None, Header()] = None,
                             owner: str | None = Depends(current_owner)):
    # The SDK sends stream_mode, the official server reads stream_modes: either is taken.
    context = request.app.state.context
    thread_id = check_uuid(thread_id, "thread")
    modes = parse_thread_modes([*(stream_mode or []), *(stream_modes or [])])
    position = parse_last_event_id(last_event_id)
    pool = await context.ready()
    if not await thread_records.exists(pool, thread_id, owner):
        raise NotFound(f"Thread with ID {thread_id} not found")
    follower = ThreadFollower(context, _watch_hub(request), thread_id, modes, position)
    return StreamingResponse(with_heartbeats(follower.frames()), media_type="text/event-stream; charset=utf-8",
                             headers=SSE_HEADERS)
