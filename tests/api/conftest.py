"""The real Serve app for API tests, reached over HTTP with the official langgraph-sdk client.

One deployment per test session (deploying costs seconds), on its own database; tests keep
apart by creating their own assistants and threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.api.graphs import TEST_GRAPHS

# The session's store has a semantic index on the scripted model's offline embeddings (the
# oracle's official server gets the same index: tests/api/oracle/embed.py). ``official_url``,
# the official server for the comparison modules, is one session fixture for all of them.
from tests.api.oracle.server import STORE_INDEX_DIMS, official_url  # noqa: E402, F401
from tests.conftest import new_database


@pytest.fixture(scope="session")
def api_database_url(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url, "t_api", drop=False) as url:
        yield url


@pytest.fixture(scope="session")
def api_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our app deployed on Serve; QUADRACODE_TEST_API_URL points the tests at a running server instead
    (a dev server with tests/api/graphs.py registered, for fast iteration)."""
    external = os.environ.get("QUADRACODE_TEST_API_URL")
    if external:
        yield external
        return
    serve_http_port = request.getfixturevalue("serve_http_port")
    api_database_url = request.getfixturevalue("api_database_url")
    from ray import serve

    from serve_app.app import APP_NAME, build_app

    data_dir = tmp_path_factory.mktemp("api-data")
    serve.run(
        build_app({"settings": {"database_url": api_database_url, "data_dir": str(data_dir),
                                "graphs": TEST_GRAPHS, "run_sweep_interval_s": 1.0,
                                "store_index_dims": STORE_INDEX_DIMS},
                   # The API tests need no actor fabric; tests/e2e run the whole system with it.
                   "fabric": False}),
        name=APP_NAME, route_prefix="/", blocking=False,
    )
    url = f"http://127.0.0.1:{serve_http_port}"
    assert httpx.get(f"{url}/ok", timeout=30).json() == {"ok": True}
    yield url
    undeploy(APP_NAME, api_database_url)


def undeploy(app_name: str, database_url: str) -> None:
    """Delete a Serve app and the run executors it started on ``database_url``."""
    from ray import serve

    serve.delete(app_name)
    kill_run_executors(database_url)


def kill_run_executors(database_url: str) -> None:
    """The executors are detached actors: stop them before their database goes away (left alive,
    they retry connecting to the dropped database for minutes, taking CPU from later tests)."""
    import ray

    from actors.run_executor import executor_names
    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings

    for name in executor_names(Settings(_env_file=None), database_url):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass


@pytest.fixture
def lg_client(api_url: str):
    """The official langgraph-sdk async client pointed at our API."""
    from langgraph_sdk import get_client

    return get_client(url=api_url)
