"""The event log over HTTP: history from Postgres, and live from the bus over SSE.

Both take the same filters. ``regex`` is searched in the envelope's text, its payload as compact
JSON with sorted keys, in history as live, so one filter selects the same envelopes in both; it
is RE2 (linear time, Python's syntax without backreferences or look-around), because it runs
inside the event bus, which a backtracking pattern would stall. An admin sees every envelope; another owner must name one of its own
threads (``thread_id``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, JsonValue, ValidationError

from actors.event_queries import EventQueries
from quadracode_ray.envelope import Envelope, EnvelopeFilter
from serve_app.errors import Invalid, NotFound
from serve_app.operator.access import Caller, CallerDep, Forbidden, context
from serve_app.operator.fabric import operator_fabric, translated
from serve_app.operator.sse import sse_frame, sse_response
from serve_app.records import threads as thread_records

router = APIRouter(tags=["Events"])


class EventView(BaseModel):
    seq: int = Field(description="Position in the log; the cursor and the SSE event id.")
    id: str
    sender: str
    recipient: str
    kind: str
    thread_id: str | None
    payload: dict[str, JsonValue]
    created_at: datetime
    attempt: int

    @classmethod
    def of(cls, seq: int, envelope: Envelope) -> EventView:
        return cls(seq=seq, **envelope.model_dump())


class EventPage(BaseModel):
    events: list[EventView]
    next_cursor: int | None = Field(description="Pass as ``cursor`` to continue where this page stopped.")
    has_more: bool = Field(description="False when the log had nothing further (at the time of the request).")


class EventFilters(BaseModel):
    sender: str | None = None
    recipient: str | None = None
    kind: list[str] | None = None
    thread_id: str | None = None
    regex: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def envelope_filter(self) -> EnvelopeFilter:
        try:
            return EnvelopeFilter(sender=self.sender, recipient=self.recipient, kinds=self.kind or None,
                                  thread_id=self.thread_id, since=self.since, until=self.until,
                                  text_regex=self.regex)
        except ValidationError as exc:
            raise Invalid("; ".join(f"{'.'.join(map(str, e['loc'])) or 'filter'}: {e['msg']}"
                                    for e in exc.errors())) from None


def _filters(
    sender: Annotated[str | None, Query(max_length=200)] = None,
    recipient: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[list[str] | None, Query(description="Repeat for several kinds.")] = None,
    thread_id: Annotated[str | None, Query(max_length=200)] = None,
    regex: Annotated[str | None, Query(max_length=1000, description="RE2 pattern (no backreferences or look-around) searched in the payload's compact JSON.")] = None,
    since: Annotated[datetime | None, Query(description="ISO time; envelopes created at or after it.")] = None,
    until: Annotated[datetime | None, Query(description="ISO time; envelopes created before it.")] = None,
) -> EventFilters:
    filters = EventFilters(sender=sender, recipient=recipient, kind=kind, thread_id=thread_id, regex=regex,
                           since=since, until=until)
    filters.envelope_filter()  # a bad regex is a 422 with the reason, before anything runs
    return filters


Filters = Annotated[EventFilters, Depends(_filters)]


async def _check_scope(request: Request, caller: Caller, filters: EventFilters) -> None:
    if caller.admin:
        return
    if filters.thread_id is None:
        raise Forbidden("the whole event log needs an admin key; pass thread_id= of one of your threads")
    try:
        thread_id = str(uuid.UUID(filters.thread_id))
    except ValueError:
        raise NotFound(f"thread {filters.thread_id} not found") from None
    if not await thread_records.exists(await context(request).pool(), thread_id, caller.owner):
        raise NotFound(f"thread {filters.thread_id} not found")


@router.get("/events", response_model=EventPage, summary="The event log's history, filtered, a page at a time")
async def event_history(
    request: Request, caller: CallerDep, filters: Filters,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=0)] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="asc: oldest first, after cursor; desc: newest "
                                                               "first, before cursor.")] = "asc",
) -> EventPage:
    await _check_scope(request, caller, filters)
    queries = EventQueries(await context(request).pool())
    page = await queries.select_matching(filters.envelope_filter(),
                                         after_seq=None if order == "desc" else cursor,
                                         before_seq=cursor if order == "desc" else None, limit=limit,
                                         newest_first=order == "desc")
    return EventPage(events=[EventView.of(seq, envelope) for seq, envelope in page.rows],
                     next_cursor=page.position, has_more=not page.exhausted)


async def _live(request: Request, filters: EnvelopeFilter, position: int) -> AsyncIterator[bytes]:
    fabric = operator_fabric(context(request))
    yield f": streaming the event log after seq {position}\n\n".encode()
    async for logged in fabric.client.watch(filters, cursor=position):
        view = EventView.of(logged.seq, logged.envelope)
        yield sse_frame("envelope", orjson.dumps(view.model_dump(mode="json")).decode(), str(logged.seq))


@router.get("/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "SSE: `envelope` events (JSON of an EventView, id = seq), heartbeats."}},
            summary="The event log live over SSE (same filters), resumable with Last-Event-ID")
async def event_stream(
    request: Request, caller: CallerDep, filters: Filters,
    cursor: Annotated[int | None, Query(ge=0, description="Start after this seq (Last-Event-ID wins); "
                                                          "default: now.")] = None,
    heartbeat_s: Annotated[float, Query(ge=0.2, le=300, description="Seconds of silence before a heartbeat "
                                                                    "comment.")] = 15.0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await _check_scope(request, caller, filters)
    position: Any = cursor
    if last_event_id is not None:
        try:
            position = int(last_event_id.strip())
        except ValueError:
            raise Invalid(f"Last-Event-ID must be an event's seq (an integer), not {last_event_id!r}") from None
        if position < 0:
            raise Invalid("Last-Event-ID must not be negative")
    if position is None:
        with translated():
            position = await operator_fabric(context(request)).client.cursor()
    return sse_response(_live(request, filters.envelope_filter(), position), heartbeat_s)
