"""/ok, /health and /info of the real Serve app, over HTTP."""

import httpx


def test_ok(api_url: str) -> None:
    response = httpx.get(f"{api_url}/ok")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_health_checks_postgres(api_url: str) -> None:
    body = httpx.get(f"{api_url}/health").json()
    assert body["status"] == "ok"
    assert body["checks"]["postgres"]["ok"] is True


def test_info_says_which_model_answers(api_url: str) -> None:
    info = httpx.get(f"{api_url}/info").json()
    assert info["quadracode"]["model"] == "scripted:default"
    assert info["quadracode"]["scripted_model"] is True
    assert "scripted model" in info["quadracode"]["model_note"]
    assert info["flags"]["assistants"] is True


async def test_sdk_client_reaches_info(lg_client) -> None:
    # The official client's own call for server info goes through our routes.
    info = await lg_client.http.get("/info")
    assert info["host"]["kind"] == "quadracode-ray"
