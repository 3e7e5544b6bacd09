"""/ok, /health, /info and /metrics: liveness, readiness, what this server is, its figures and its actors'."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from quadracode_ray import NAMESPACE, __version__
from serve_app.metrics_cluster import cluster_metrics_text
from serve_app.metrics_http import prometheus_text
from serve_app.redaction import redact, secrets_of

router = APIRouter(tags=["System"])


@router.get("/ok", summary="Liveness: the API process answers")
async def ok() -> dict:
    return {"ok": True}


@router.get("/health", summary="Readiness: the API can reach what it depends on")
async def health(request: Request) -> JSONResponse:
    context = request.app.state.context
    checks: dict[str, dict] = {}
    started = time.perf_counter()
    try:
        pool = await asyncio.wait_for(context.pool(), timeout=10)
        async with pool.connection() as conn:
            await (await conn.execute("SELECT 1")).fetchone()
        checks["postgres"] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # readiness reports any failure instead of raising
        checks["postgres"] = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}",
                                                           secrets_of(context.settings))}
    healthy = all(check["ok"] for check in checks.values())
    return JSONResponse({"status": "ok" if healthy else "unavailable", "checks": checks},
                        status_code=200 if healthy else 503)


@router.get("/info", summary="Version, capabilities and the model in use")
async def info(request: Request) -> dict:
    settings = request.app.state.context.settings
    return {
        "version": __version__,
        "flags": {"assistants": True, "crons": True, "langsmith": False},
        "host": {"kind": "quadracode-ray", "namespace": NAMESPACE},
        "quadracode": {
            "version": __version__,
            "model": settings.default_model,
            "scripted_model": settings.uses_scripted_model,
            "model_note": (
                "No API key is set: the built-in scripted model answers (offline, deterministic)."
                if settings.uses_scripted_model else None
            ),
        },
    }


@router.get("/metrics", summary="Prometheus metrics of this API replica and of the actors (text format)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
async def prometheus_metrics(
    request: Request,
    actors: bool = Query(True, description="Also the actors' figures (ray_quadracode_*, this installation's), "
                                           "read from every Ray node's metrics agent; false: only this replica's own."),
) -> Response:
    body, content_type = prometheus_text()
    if actors:
        body += await cluster_metrics_text(request.app.state.context.settings.actor_name_prefix)
    return Response(content=body, media_type=content_type)
