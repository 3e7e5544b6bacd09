"""Size limits on what a request may carry: its headers (431) and its body (413).

A pure ASGI middleware (no buffering), outermost but for the metrics, so an oversized request is
refused before auth, routing or JSON parsing spend anything on it. The body is counted as it
arrives: a declared ``Content-Length`` over the limit is refused at once, a chunked body as soon
as its running size passes it. Workspace uploads (files and tar archives) have their own, larger
limit, enforced by their route (serve_app/routes/workspace_files.py).
"""

from __future__ import annotations

import json
import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.auth import route_path

UPLOAD_PATHS = re.compile(r"^/workspaces/[^/]+/(files/content|archive)$")


class BodyTooLarge(HTTPException):
    """Raised into the app when a streamed body passes the limit. An HTTPException, so that the
    app answers it as a 413 wherever it is read (FastAPI turns other errors of a body read into 400s)."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"request body is over {limit} bytes, the most accepted")


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int, upload_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.upload_body_bytes = upload_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        header_bytes = sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF
        if header_bytes > self.max_header_bytes:
            await _refuse(send, 431, f"request headers are {header_bytes} bytes; at most "
                                     f"{self.max_header_bytes} are accepted", scope)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_body_bytes if UPLOAD_PATHS.match(route_path(scope)) else self.max_body_bytes
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, f"request body is {int(declared)} bytes; at most {limit} are accepted")
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:  # the app already answered (a stream): nothing more can be said
                return
            await _refuse(send, 413, f"request body is over {limit} bytes, the most accepted")


async def _refuse(send: Send, status: int, detail: str, scope: Scope | None = None) -> None:
    if scope is not None and scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1009, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
