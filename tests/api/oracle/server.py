"""The official server as the behaviour oracle: ``langgraph dev`` (langgraph-cli[inmem], a dev
dependency) on a free port (never 2024), with the graphs of tests/api/oracle/langgraph.json.
A missing official server FAILS the tests that use it. The fixture is registered by
tests/api/conftest.py, so every comparison module of the session shares one server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ORACLE_DIR = Path(__file__).parent
LANGGRAPH_CLI = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "langgraph"
STARTUP_DEADLINE_S = 120
STORE_INDEX_DIMS = 64  # the store's semantic index, the same on both servers


@pytest.fixture(scope="session")
def official_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = str(LANGGRAPH_CLI) if LANGGRAPH_CLI.exists() else shutil.which("langgraph")
    if cli is None:
        pytest.fail("the official server is missing: `uv sync` installs langgraph-cli[inmem] (dev group)",
                    pytrace=False)
    port = free_port()
    # The dev server keeps its state under its working folder: a fresh one per session, outside
    # the repository, with a config naming the graph file by absolute path.
    workdir = tmp_path_factory.mktemp("oracle")
    config = json.loads((ORACLE_DIR / "langgraph.json").read_text())
    config["graphs"] = {gid: str(ORACLE_DIR / spec.removeprefix("./")) for gid, spec in config["graphs"].items()}
    index = config["store"]["index"]
    assert index["dims"] == STORE_INDEX_DIMS  # the same semantic index as our session's store
    index["embed"] = str(ORACLE_DIR / index["embed"].removeprefix("./"))
    (workdir / "langgraph.json").write_text(json.dumps(config))
    log_path = workdir / "langgraph-dev.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
           "LANGCHAIN_TRACING_V2": "false", "LANGSMITH_API_KEY": ""}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [cli, "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", "langgraph.json"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the official server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}",
                        pytrace=False)
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)  # polling a subprocess's port, with the deadline above
    pytest.fail(f"the official server did not answer within {STARTUP_DEADLINE_S} s:\n"
                f"{log_path.read_text()[-3000:]}", pytrace=False)
