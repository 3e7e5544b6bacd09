"""Server-sent events exactly as the official server frames them (CRLF, metadata first,
heartbeat comments while idle), relaying the executor's bytes as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from fastapi.responses import StreamingResponse

from runs.stream import END_EVENT
from serve_app.context import AppContext
from serve_app.runs.service import cancel_run, detached, run_events

HEARTBEAT = b": heartbeat\r\n\r\n"
HEARTBEAT_INTERVAL_S = 5.0
METADATA_COALESCE_S = 0.05
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    parts = [b"event: ", event.replace("\r", "").replace("\n", "").encode(), b"\r\ndata: ", data, b"\r\n"]
    if event_id is not None:
        parts += [b"id: ", event_id.encode(), b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def _wanted(event: str, modes: list[str] | None) -> bool:
    if not modes or event in ("error", "metadata"):
        return True
    base = event.split("|", 1)[0].split("/", 1)[0]
    return base in modes or (base == "messages" and "messages-tuple" in modes)


async def with_heartbeats(source: AsyncIterator[bytes], every_s: float = HEARTBEAT_INTERVAL_S,
                          heartbeat: bytes = HEARTBEAT) -> AsyncIterator[bytes]:
    """``source``'s frames, with a comment frame whenever it is silent for ``every_s``, so
    proxies and clients keep a long, quiet stream open (SSE clients ignore comments); closing
    this generator (the client left) closes ``source``."""
    iterator = source.__aiter__()
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield heartbeat
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await iterator.aclose()


async def _chain(head: list, rest: AsyncIterator) -> AsyncIterator:
    for item in head:
        yield item
    async for item in rest:
        yield item


async def _relay(context: AppContext, run: dict, *, after: int, modes: list[str] | None, resumable: bool,
                 start: bool, with_metadata: bool = True) -> AsyncIterator[bytes]:
    run_id = str(run["run_id"])
    finished = False
    events = run_events(context, run, after=after, start=start)
    # The first call to the executor (which starts the run) goes out at once; the metadata frame
    # waits a moment for the first events, to share one message with them (each message through
    # Serve costs the replica and the proxy CPU): a short run's stream is then one message. The
    # host gathers a batch for up to RELAY_COALESCE_S (runs/host.py), so this waits longer.
    first: asyncio.Future | None = asyncio.ensure_future(anext(events))
    metadata = frame("metadata", orjson.dumps({"run_id": run_id, "attempt": max(run.get("attempt") or 0, 1)})
                     ) if with_metadata else b""
    try:
        await asyncio.wait({first}, timeout=METADATA_COALESCE_S)
        if not first.done() and metadata:
            yield metadata
            metadata = b""
        try:
            head = [await first]
        except StopAsyncIteration:
            head = []
        first = None
        async for items in _chain(head, events):
            chunk = [metadata] if metadata else []
            for seq, event, data in items:
                if event == END_EVENT:
                    finished = True
                    break
                if _wanted(event, modes):
                    chunk.append(frame(event, data, str(seq) if resumable else None))
            if chunk:
                yield b"".join(chunk)
                metadata = b""
            if finished:
                break
        if metadata:
            yield metadata
    finally:
        if first is not None:
            first.cancel()
        with contextlib.suppress(BaseException):
            await events.aclose()


class _CancelledWithClientResponse(StreamingResponse):
    """The stream of a run that dies with its client (``on_disconnect`` ``cancel``): whenever the
    body did not reach the run's end (the client left, or left before the body's first step made
    the call that starts the run), the run is cancelled."""

    def __init__(self, body: AsyncIterator[bytes], context: AppContext, run: dict, **kwargs):
        self.completed = False

        async def to_the_end() -> AsyncIterator[bytes]:
            async for chunk in body:
                yield chunk
            self.completed = True

        super().__init__(to_the_end(), **kwargs)
        self.context, self.run = context, run

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.completed:
                detached(cancel_run(self.context, str(self.run["run_id"]), self.run["executor"]))


def stream_response(context: AppContext, run: dict, *, after: int = -1, modes: list[str] | None = None,
                    resumable: bool = False, cancel_on_disconnect: bool = False, start: bool = False,
                    headers: dict[str, str] | None = None, with_metadata: bool = True) -> StreamingResponse:
    """``start``: the run was created with ``push=False`` and the stream's first call starts it.
    ``with_metadata=False`` (joining a run's stream, as the official server): no metadata event."""
    body = with_heartbeats(_relay(context, run, after=after, modes=modes, resumable=resumable,
                                   start=start,
                                   with_metadata=with_metadata))
    options = {"media_type": "text/event-stream; charset=utf-8", "headers": {**SSE_HEADERS, **(headers or {})}}
    if cancel_on_disconnect:
        return _CancelledWithClientResponse(body, context, run, **options)
    return StreamingResponse(body, **options)


def run_location_headers(run: dict, suffix: str, *, stateless: bool = False) -> dict[str, str]:
    """As the official server: a stateless run created or streamed is at ``/runs/{run_id}``."""
    base = f"/runs/{run['run_id']}" if stateless else f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    return {"Location": f"{base}/{suffix}", "Content-Location": base}
