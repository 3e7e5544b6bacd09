"""The "code name" test: tell the orchestrator a code name, restart the whole system, ask again.

As a user does it: `quadracode-ray up` (its own Ray head, embedded Postgres and Serve app on
ports of its own), the official langgraph-sdk client on assistant `orchestrator`, one thread,
`runs.wait`; then `down`, `up`, and the same thread is asked for the code name. The same
running system also delegates over the API: the orchestrator assistant's run returns a task id
at once and the agent's result lands in the thread later.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.foundation.test_cli_system import run_cli

pytestmark = pytest.mark.slow


def ask(api: str, thread_id: str, text: str) -> str:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=api, timeout=120)
    values = client.runs.wait(thread_id, "orchestrator", input={"messages": [{"role": "user", "content": text}]})
    assert isinstance(values, dict) and "__error__" not in values, values
    return values["messages"][-1]["content"]


@pytest.fixture(scope="module")
def system_env() -> dict[str, str]:
    """A private installation: its own data folder (short: the Postgres socket lives in it),
    ports, sandbox installation id, and the scripted model whatever keys the developer has."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUADRACODE_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    env.update({
        "QUADRACODE_DATA_DIR": str(Path("/tmp") / f"qr-e2e-{uuid.uuid4().hex[:8]}"),
        "QUADRACODE_HTTP_PORT": str(free_port()),
        "QUADRACODE_RAY_PORT": str(free_port()),
        "QUADRACODE_DASHBOARD_PORT": str(free_port()),
        "QUADRACODE_RAY_NUM_CPUS": "2",
        "QUADRACODE_MODEL": "scripted:default",
        "QUADRACODE_SANDBOX_INSTALLATION_ID": f"e2e{uuid.uuid4().hex[:8]}",
    })
    return env


@pytest.fixture(scope="module")
def api(system_env: dict[str, str]) -> Iterator[str]:
    """`quadracode-ray up` once for the module (`up` costs a minute); `down` and cleanup at the end."""
    from sandbox.testing import remove_installation

    try:
        up = run_cli(system_env, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        yield f"http://127.0.0.1:{system_env['QUADRACODE_HTTP_PORT']}"
    finally:
        run_cli(system_env, "down")
        shutil.rmtree(system_env["QUADRACODE_DATA_DIR"], ignore_errors=True)
        remove_installation(system_env["QUADRACODE_SANDBOX_INSTALLATION_ID"])


def test_the_orchestrator_assistant_delegates_over_the_api(api: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=api)
    thread_id = client.threads.create()["thread_id"]
    answer = ask(api, thread_id, "delegate to a coder agent: write hello.py that prints 42 and run it")
    match = re.search(r"Delegated to agent \S+ as task (\S+?)\.", answer)
    assert match, answer
    # The run ended at once; the agent's result is folded into the same thread later.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        messages = client.threads.get_state(thread_id)["values"].get("messages", [])
        folded = [m["content"] for m in messages if m.get("name") == "task_result"]
        if folded:
            break
        time.sleep(0.5)  # polling the API for the result, with a deadline
    else:
        raise AssertionError("the agent's result never reached the thread")
    assert folded[0].startswith(f"[task {match.group(1)} succeeded") and "42" in folded[0]


def test_the_code_name_survives_down_and_up(system_env: dict[str, str], api: str) -> None:
    from langgraph_sdk import get_sync_client

    env = system_env
    code_name = f"HERON-{uuid.uuid4().hex[:6].upper()}"
    thread_id = get_sync_client(url=api).threads.create()["thread_id"]
    assert ask(api, thread_id, f"Remember the code name {code_name}") == f"Noted: the code name is {code_name}."

    down = run_cli(env, "down")
    assert down.returncode == 0, down.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/ok", timeout=2)

    up = run_cli(env, "up")
    assert up.returncode == 0, up.stderr + up.stdout
    assert code_name in ask(api, thread_id, "What is the code name?")
