from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from quadracode_ray.llm import make_chat_model
from quadracode_ray.llm.scripted.server import ScriptedServer


@pytest.fixture(scope="session")
def graph_llm_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_model(make_settings, graph_llm_server) -> Callable:
    """make_model(name=None, protocol="openai") -> a scripted ChatModel on the test server."""
    def make(name: str | None = None, protocol: str = "openai"):
        settings = make_settings(scripted_server_url=graph_llm_server.url, scripted_wire_protocol=protocol)
        return make_chat_model(f"scripted:{name or 'graph-' + uuid.uuid4().hex[:6]}", settings)

    return make


@pytest.fixture
def thread() -> dict:
    return {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}


async def poll(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait for ``condition`` with a deadline (never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}
