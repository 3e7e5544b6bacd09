"""The Serve application: one FastAPI ingress deployment.

``build_app`` is the import path a Serve config names (``serve_app.app:build_app``): the
``quadracode-ray up`` command and ``serve deploy serve_config.yaml`` both deploy it. This module
stays light (Ray Serve and the settings): Serve imports it in the process that builds the
application as well as in each replica, and only the replica needs the routes (serve_app/asgi.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ray import serve
from ray.serve import Application

from quadracode_ray.config import ENV_PREFIX, load_settings
from quadracode_ray.settings_secrets import worker_env

if TYPE_CHECKING:
    from fastapi import FastAPI

APP_NAME = "quadracode"
DEPLOYMENT_NAME = "api"
# How long a starting replica waits for the fabric's singletons to answer before it fails.
FABRIC_READY_TIMEOUT_S = 120.0


# Requests mostly wait (on runs, on SSE streams that last as long as their run), so a replica
# takes many at once; Serve's default of 5 would queue the sixth stream behind the others.
MAX_ONGOING_REQUESTS = 1000


# - The replica runs our (async) code on Serve's own event loop instead of a second loop in its own
#   thread: no cross-thread hop per request and per streamed chunk (measured in bench/reports/api.md).
# - Its log lines (one access line a request) go to Serve's replica log file only, not also to
#   stderr, from where Ray's log monitor reads every line again and publishes it to each driver.
# Env vars given here are added to the application's runtime_env, not instead of it.
REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_LOG_TO_STDERR": "0"}


@serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": REPLICA_ENV}},
                  max_ongoing_requests=MAX_ONGOING_REQUESTS)
@serve.ingress()
class QuadracodeAPI:
    """One API replica; its FastAPI app is built per replica, after settings are loaded.

    ``fabric``: get-or-create the actor fabric's singletons (event bus, registry, fleet,
    orchestrator; race-free across replicas). They are created first, start while the replica
    imports its routes, and the replica reports ready only once they all answer, so a deploy that
    is RUNNING has a working fabric (and a fabric that cannot start fails the deploy)."""

    def __init__(self, settings_overrides: dict[str, Any] | None = None, fabric: bool = True):
        self.settings = load_settings(**(settings_overrides or {}))
        self.fabric = None
        if fabric:
            from actors.bootstrap import create_system

            self.fabric = create_system(self.settings)

    async def __serve_build_asgi_app__(self) -> FastAPI:
        from serve_app.asgi import create_fastapi_app
        from serve_app.context import AppContext

        context = AppContext(self.settings)
        app = create_fastapi_app(context)
        # The run path (Postgres pool, graph assistants, run executors: new workers importing
        # LangGraph) warms up beside the fabric's start rather than after it (the app's startup
        # keeps this task): on a small machine the two waits overlapped cut seconds off a deploy.
        context.start_warm_up()
        if self.fabric is not None:
            from actors.bootstrap import wait_until_ready

            await wait_until_ready(self.fabric, FABRIC_READY_TIMEOUT_S)
        return app


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for Serve configs.

    ``args``: ``replicas``; ``settings`` overrides; ``fabric`` (default true): each replica
    gets-or-creates the actor fabric's singletons (see QuadracodeAPI). The builder itself only
    names the deployment: it runs in a process of its own per deploy, before any replica starts,
    and importing the routes or the actors there cost seconds of CPU on the path to ready."""
    args = dict(args or {})
    replicas = int(args.pop("replicas", 1))
    settings_overrides = args.pop("settings", None) or {}
    fabric = bool(args.pop("fabric", True))
    if args:
        raise ValueError(f"unknown application args: {', '.join(sorted(args))} (expected replicas, settings, fabric)")
    # A settings error fails the deploy here, before any replica.
    settings = load_settings(**settings_overrides)
    # The application's QUADRACODE_* settings, given to the replicas explicitly: on a `ray up`
    # cluster the nodes' Ray was started without them, and a replica must use the fabric's database.
    # Secrets go by reference: a runtime_env is shown by the Ray dashboard (settings_secrets).
    settings_env = worker_env({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)})
    # Placed by resources (api_resources), never by node: any node offering them hosts a replica.
    placement = {"resources": dict(settings.api_resources)} if settings.api_resources else {}
    return QuadracodeAPI.options(num_replicas=replicas, ray_actor_options={
        "num_cpus": 0, **placement, "runtime_env": {"env_vars": {**settings_env, **REPLICA_ENV}}}).bind(
            settings_overrides, fabric)
