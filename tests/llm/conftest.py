from __future__ import annotations

from collections.abc import Iterator

import pytest

from quadracode_ray.llm.scripted.server import ScriptedServer


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """One scripted model server on a free loopback port for the LLM tests."""
    server = ScriptedServer().start()
    yield server
    server.stop()
