"""The fleet's typed errors as the operator routes answer them (pure logic: an ASGI app with the
API's error handlers and ``translated``, the error raised as Ray hands it to the caller)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from ray.exceptions import RayTaskError

from actors.fleet import (
    AgentStartFailed,
    AgentStartTimeout,
    FleetCapacityError,
    HotpathAgentError,
    UnknownAgentError,
)
from serve_app.errors import install_error_handlers
from serve_app.operator.fabric import translated

CASES = [
    (AgentStartTimeout("agent 'coder-1' did not start within 120 s (the machine may be short of CPU); "
                       "it was removed, try again"), 503),
    (AgentStartFailed("agent 'coder-4' failed to start (its process died at each of 2 starts); it was removed"), 503),
    (FleetCapacityError("agent cap reached: 4 live and 0 starting of at most 4"), 409),
    (HotpathAgentError("agent 'coder-2' is on the hotpath"), 409),
    (UnknownAgentError("no live agent 'coder-3'"), 404),
]


def _app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/fleet/agents")
    async def spawn() -> dict:
        with translated():
            # As a failed actor call raises it: a RayTaskError that is also the actor's exception.
            raise RayTaskError("FleetManager.spawn", "traceback", error).as_instanceof_cause()

    return app


@pytest.mark.parametrize(("error", "status"), CASES, ids=[type(e).__name__ for e, _ in CASES])
async def test_a_fleet_error_is_its_status_with_the_fleets_reason(error: Exception, status: int) -> None:
    transport = httpx.ASGITransport(app=_app(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
        answer = await http.post("/fleet/agents")
    assert answer.status_code == status
    assert answer.json() == {"detail": str(error)}
