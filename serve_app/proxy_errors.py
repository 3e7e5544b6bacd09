"""A middleware for Ray Serve's HTTP proxy (not the API's replica): a request the replica never
answered is a 503 with Retry-After, not the 500 of the proxy's HTTP server.

When the API replica dies holding requests (a SIGKILL, an out-of-memory kill, its node lost),
Serve's proxy gets an ActorDiedError for each; for any error but a timeout, back-pressure or an
unavailable deployment it sends nothing (ray/serve/_private/http_util.py,
``send_http_response_on_exception``), and uvicorn answers an empty ``500 Internal Server Error``.
Nothing of the request may have been done, or all of it: the client is told to retry after a
replica is back (about what Serve takes to replace one), and, for a run, to look first whether its
run exists (a run id from ``/threads/{id}/runs``). A response already started (a stream cut short)
cannot be changed: the client sees the stream end early, and reconnects (``since``).

Serve loads it in every proxy from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (PROXY_CALLBACK),
which the Ray head gets at its start with the ``proxy`` ingress (quadracode_ray/serve_ingress.py).
With the ``haproxy`` ingress (the default) requests go from HAProxy to the replica, past this
middleware, except those HAProxy sends to its backup server, the Python proxy Serve keeps on the
head (while no replica is up), which has it too; HAProxy's own answers are
quadracode_ray/haproxy_errors.py's.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.middleware import Middleware

from quadracode_ray.haproxy_errors import RETRY_AFTER_S  # one figure for both ingresses

PROXY_CALLBACK = "serve_app.proxy_errors:proxy_middlewares"
DETAIL = ("The API replica ended without answering this request (it died or is being replaced); "
          "retry after Retry-After seconds. A run may have been created: list the thread's runs first.")


class UnansweredAs503:
    """Pure ASGI: passes everything through; a request that ends with no response started gets a 503."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
        if not started:
            await _unavailable(send)


async def _unavailable(send: Any) -> None:
    body = json.dumps({"detail": DETAIL}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(RETRY_AFTER_S).encode())]})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list[Middleware]:
    return [Middleware(UnansweredAs503)]
