"""The scripted server as its own process (as `up` or another machine would run it)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from langchain_core.messages import HumanMessage

from quadracode_ray.llm import make_chat_model
from tests.conftest import free_port


@pytest.fixture
def server_process():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "quadracode_ray.llm.scripted.server", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"scripted server did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)  # polling with a deadline for another process to listen
    yield url
    proc.terminate()
    proc.wait(10)


async def test_both_sdks_and_http_fault_injection_against_a_server_process(server_process, make_settings):
    async with httpx.AsyncClient(base_url=server_process) as client:
        response = await client.post("/_scripted/faults", json={"model": "proc", "statuses": [429]})
        assert response.json() == {"ok": True}
        bad = await client.post("/v1/chat/completions", json={"model": "x", "messages": []})
        assert bad.status_code == 400 and "non-empty" in bad.json()["error"]["message"]
        bad = await client.post("/v1/messages", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    for protocol in ("openai", "anthropic"):
        settings = make_settings(scripted_server_url=server_process, scripted_wire_protocol=protocol)
        model = make_chat_model("scripted:proc", settings)
        reply = await model.generate([HumanMessage("remember the code name MOTH")])
        assert "MOTH" in reply.text
        await model.aclose()
    async with httpx.AsyncClient(base_url=server_process) as client:
        seen = (await client.get("/health")).json()["requests"]["proc"]
    assert seen == 3  # the 429, its retry, and the second protocol's request
