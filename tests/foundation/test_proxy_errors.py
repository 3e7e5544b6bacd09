"""The proxy middleware (serve_app/proxy_errors.py) as Serve applies it, on plain ASGI apps: a
request the app ended without answering (what Serve's proxy does when the replica died holding
it) is a 503 with Retry-After; everything answered passes through unchanged."""

from __future__ import annotations

import httpx
import pytest
from ray.serve._private.http_util import _apply_middlewares, validate_http_proxy_callback_return

from serve_app.proxy_errors import RETRY_AFTER_S, proxy_middlewares


async def _silent(scope, receive, send) -> None:
    """Serve's proxy after an ActorDiedError: nothing sent (ray/serve/_private/http_util.py)."""


async def _raises(scope, receive, send) -> None:
    raise RuntimeError("the replica died")


async def _answers(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"a bug, answered by the app itself"})


async def _breaks_midway(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("the replica died mid-stream")


def _client(app) -> httpx.AsyncClient:
    wrapped = _apply_middlewares(app, validate_http_proxy_callback_return(proxy_middlewares()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://proxy")


@pytest.mark.parametrize("app", [_silent, _raises])
async def test_an_unanswered_request_is_a_503_with_retry_after(app) -> None:
    async with _client(app) as client:
        response = await client.post("/threads/x/runs/wait", json={})
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "retry" in response.json()["detail"]


async def test_an_answer_passes_through_unchanged() -> None:
    async with _client(_answers) as client:
        response = await client.get("/ok")
    assert (response.status_code, response.text) == (500, "a bug, answered by the app itself")
    assert "retry-after" not in response.headers


async def test_a_started_response_is_not_rewritten() -> None:
    async with _client(_breaks_midway) as client:
        with pytest.raises(RuntimeError, match="mid-stream"):
            await client.get("/stream")
