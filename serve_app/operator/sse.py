"""Server-sent events of the operator routes: frames, and a stream with heartbeats that stops
its source when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

HEARTBEAT = b": heartbeat\n\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_frame(event: str, data: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


async def with_heartbeats(source: AsyncIterator[bytes], every_s: float) -> AsyncIterator[bytes]:
    """``source``'s frames, and a comment frame whenever it is silent for ``every_s``; closing
    this generator (the client left) closes ``source``."""
    iterator = source.__aiter__()
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not done:
                yield HEARTBEAT
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
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()


def sse_response(frames: AsyncIterator[bytes], heartbeat_s: float) -> StreamingResponse:
    return StreamingResponse(with_heartbeats(frames, heartbeat_s), media_type="text/event-stream",
                             headers=SSE_HEADERS)
