"""The API's FastAPI app (routes, middleware, the control panel), built once per replica.

Imported by the replica (serve_app/app.py's deployment), not by Serve's application build: it
pulls in every route, LangGraph and the graphs, seconds of CPU that the build does not need."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI

from quadracode_ray import __version__
from serve_app.auth import install_auth
from serve_app.context import AppContext
from serve_app.errors import install_error_handlers
from serve_app.limits import RequestLimitsMiddleware
from serve_app.metrics_http import install_http_metrics
from serve_app.openapi_schema import install_openapi
from serve_app.redaction import install_log_redaction
from serve_app.routes import (
    a2a,
    assistants,
    crons,
    mcp,
    runs,
    store,
    system,
    thread_events,
    thread_stream,
    threads,
)
from serve_app.routes import control as operator_control
from serve_app.routes import events as operator_events
from serve_app.routes import fleet as operator_fleet
from serve_app.routes import workspace_files as operator_files
from serve_app.routes import workspaces as operator_workspaces

# The operator API (README "Operator API"): the fleet, the event log, workspaces, control.
OPERATOR_ROUTERS = (operator_fleet, operator_events, operator_workspaces, operator_files, operator_control)

@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    # Start the run executors as soon as the replica is up (not on the first request), so runs
    # left queued by a stop are resumed even when no client calls; retried until Postgres answers.
    # The replica may have started it already (serve_app/app.py): the same task is kept.
    warm_up = app.state.context.start_warm_up()
    panel = getattr(app.state, "panel", None)
    # The control panel builds in the background (serve_app/panel/lazy.py), once the run path is
    # ready: Gradio's import and build take ~6 s of CPU, which on a small machine delayed the
    # executors' start and so `up`'s ready. A request to /ui before then starts the build itself.
    panel_after = (asyncio.get_running_loop().create_task(_start_panel_after(warm_up, panel))
                   if panel is not None else None)
    yield
    warm_up.cancel()
    if panel_after is not None:
        panel_after.cancel()
    if panel is not None:
        await panel.close()


async def _start_panel_after(warm_up: asyncio.Task, panel) -> None:
    with contextlib.suppress(Exception):  # a failed warm-up is logged by warm_up; the panel still builds
        await asyncio.shield(warm_up)
    panel.start()


def create_fastapi_app(context: AppContext) -> FastAPI:
    app = FastAPI(
        title="Quadracode-Ray",
        version=__version__,
        description="The LangGraph Agent Server API and the operator API (fleet, events, workspaces, "
                    "control), served by Ray Serve.",
        lifespan=_lifespan,
    )
    app.state.context = context
    install_log_redaction(context.settings)
    install_error_handlers(app)
    install_openapi(app)
    for module in (system, assistants, threads, thread_stream, thread_events, runs, store, crons, mcp, a2a,
                   *OPERATOR_ROUTERS):
        app.include_router(module.router)
    if context.settings.panel_enabled:
        from serve_app.panel.lazy import mount_panel_lazily

        mount_panel_lazily(app)  # the control panel at /ui: a client of these routes over HTTP
    install_auth(app)  # a no-op when no API key is configured
    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=context.settings.api_max_body_bytes,
                       max_header_bytes=context.settings.api_max_header_bytes,
                       upload_body_bytes=operator_files.MAX_UPLOAD_BYTES)  # outside auth: refused first
    install_http_metrics(app)  # last, so it is outermost and counts 401/403s too
    return app


