"""The Serve application: one FastAPI ingress deployment.

``build_app`` is the import path a Serve config names (``serve_app.app:build_app``): the
``quadracode-ray up`` command and ``serve deploy serve_config.yaml`` both deploy it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from quadracode_ray import __version__
from quadracode_ray.config import ENV_PREFIX, load_settings
from quadracode_ray.settings_secrets import worker_env
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

APP_NAME = "quadracode"
DEPLOYMENT_NAME = "api"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    # Start the run executors as soon as the replica is up (not on the first request), so runs
    # left queued by a stop are resumed even when no client calls; retried until Postgres answers.
    warm_up = asyncio.get_running_loop().create_task(app.state.context.warm_up())
    yield
    warm_up.cancel()


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
        from serve_app.panel.app import mount_panel

        mount_panel(app)  # the control panel at /ui: a client of these routes over HTTP
    install_auth(app)  # a no-op when no API key is configured
    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=context.settings.api_max_body_bytes,
                       max_header_bytes=context.settings.api_max_header_bytes,
                       upload_body_bytes=operator_files.MAX_UPLOAD_BYTES)  # outside auth: refused first
    install_http_metrics(app)  # last, so it is outermost and counts 401/403s too
    return app


# Requests mostly wait (on runs, on SSE streams that last as long as their run), so a replica
# takes many at once; Serve's default of 5 would queue the sixth stream behind the others.
MAX_ONGOING_REQUESTS = 1000


# The replica runs our (async) code on Serve's own event loop instead of a second loop in its own
# thread: no cross-thread hop per request and per streamed chunk (measured in bench/reports/api.md).
# Env vars given here are added to the application's runtime_env, not instead of it.
REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


@serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": REPLICA_ENV}},
                  max_ongoing_requests=MAX_ONGOING_REQUESTS)
@serve.ingress()
class QuadracodeAPI:
    """One API replica; its FastAPI app is built per replica, after settings are loaded."""

    def __init__(self, settings_overrides: dict[str, Any] | None = None):
        self.context = AppContext(load_settings(**(settings_overrides or {})))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_fastapi_app(self.context)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for Serve configs.

    ``args``: ``replicas``; ``settings`` overrides; ``fabric`` (default true): get-or-create the
    actor fabric's singletons (event bus, registry, fleet, orchestrator) first. A builder runs
    once per deploy, not once per replica, which is where the bootstrap belongs."""
    args = dict(args or {})
    replicas = int(args.pop("replicas", 1))
    settings_overrides = args.pop("settings", None) or {}
    fabric = bool(args.pop("fabric", True))
    if args:
        raise ValueError(f"unknown application args: {', '.join(sorted(args))} (expected replicas, settings, fabric)")
    settings = load_settings(**settings_overrides)
    if fabric:
        from actors.bootstrap import ensure_system

        ensure_system(settings)
    # The application's QUADRACODE_* settings, given to the replicas explicitly: on a `ray up`
    # cluster the nodes' Ray was started without them, and a replica must use the fabric's database.
    # Secrets go by reference: a runtime_env is shown by the Ray dashboard (settings_secrets).
    settings_env = worker_env({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)})
    # Placed by resources (api_resources), never by node: any node offering them hosts a replica.
    placement = {"resources": dict(settings.api_resources)} if settings.api_resources else {}
    return QuadracodeAPI.options(num_replicas=replicas, ray_actor_options={
        "num_cpus": 0, **placement, "runtime_env": {"env_vars": {**settings_env, **REPLICA_ENV}}}).bind(settings_overrides)
