"""Server-sent events of the operator routes: frames, and a stream with heartbeats that stops
its source when the client goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from serve_app.runs.sse import with_heartbeats

HEARTBEAT = b": heartbeat\n\n"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_frame(event: str, data: str, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def sse_response(frames: AsyncIterator[bytes], heartbeat_s: float) -> StreamingResponse:
    return StreamingResponse(with_heartbeats(frames, heartbeat_s, HEARTBEAT), media_type="text/event-stream",
                             headers=SSE_HEADERS)
