"""Request count and latency per route, and the Prometheus text ``/metrics`` serves.

Labels use the route's template (``/threads/{thread_id}``), never the raw path, so the number
of series stays bounded whatever ids clients send. Latency is measured to the end of the
response body, so for SSE it is the stream's duration; ``time to headers`` is kept apart.
"""

from __future__ import annotations

import time

import prometheus_client
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quadracode_ray import metrics

UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = metrics.counter("http_requests_total", "HTTP requests answered by the API, by route and status.",
                           ("method", "route", "status"))
LATENCY = metrics.histogram("http_request_duration_seconds",
                            "Seconds from request to the end of the response body, by route.",
                            ("method", "route"))
TIME_TO_HEADERS = metrics.histogram("http_time_to_headers_seconds",
                                    "Seconds from request to the response's status line, by route.",
                                    ("method", "route"))
IN_FLIGHT = metrics.gauge("http_requests_in_flight", "Requests being answered by this replica.")


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering
        headers_at: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, headers_at
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_at = time.perf_counter()
            await send(message)

        self._in_flight += 1
        IN_FLIGHT.set(self._in_flight)
        try:
            await self.app(scope, receive, timed_send)
        finally:
            self._in_flight -= 1
            IN_FLIGHT.set(self._in_flight)
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            ended = time.perf_counter()
            REQUESTS.inc(tags={"method": method, "route": route, "status": str(status)})
            LATENCY.observe(ended - started, tags={"method": method, "route": route})
            if headers_at is not None:
                TIME_TO_HEADERS.observe(headers_at - started, tags={"method": method, "route": route})


def install_http_metrics(app: FastAPI) -> None:
    """Count and time every request of ``app``. Idempotent."""
    if getattr(app.state, "http_metrics_installed", False):
        return
    app.state.http_metrics_installed = True
    app.add_middleware(HttpMetricsMiddleware)


def prometheus_text() -> tuple[bytes, str]:
    """This process's metrics in the Prometheus text format, and its content type."""
    return prometheus_client.generate_latest(prometheus_client.REGISTRY), prometheus_client.CONTENT_TYPE_LATEST
