"""POSTs on a keep-alive connection when the API's Serve replica dies (HAProxy ingress).

HAProxy closes a client connection without a status when the server of a request that is not
the first on that connection closed without answering ("abort keep-alive", hard-coded in its
http_ana.c for any request whose client connection already carried one: no setting turns it
off). That request had reached the replica, which may have done it (created a run), so it must
not be replayed: these tests hold the two sides of that line.

- A POST sent on a warm keep-alive connection after the replica died never reaches it: HAProxy
  retries the connection elsewhere (the successor, or Serve's backup proxy), so the client gets
  an answer (the POST done once) or a 503 with Retry-After, never a dropped connection.
- A POST the dying replica held is never replayed: the client sees its connection closed (or a
  503 with Retry-After) and the run it created exists once and ends.

Each test SIGKILLs the replica of an app of this module's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.api.test_replica_death import _answers, _replica_pids
from tests.polling import eventually
from tests.reliability import rig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fragile(ray_cluster: None, serve_http_port: int, database_url: str, docker_client,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    settings = rig.settings_for(database_url, tmp_path_factory.mktemp("keepalive"))
    app_name = f"ka-{uuid.uuid4().hex[:6]}"
    try:
        yield rig.deploy(settings, serve_http_port, app_name), app_name
    finally:
        rig.teardown(settings, app_name)


async def _kill_the_replica(app_name: str) -> None:
    (pid,) = await asyncio.to_thread(_replica_pids, app_name)
    process = psutil.Process(pid)
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(process.wait, 30)  # gone: its sockets are closed by the kernel


def _answered_or_told_to_retry(response: httpx.Response) -> bool:
    return response.status_code == 200 or (response.status_code == 503 and bool(response.headers.get("retry-after")))


async def test_a_post_sent_after_the_replica_died_is_answered_not_dropped(fragile: tuple[str, str]) -> None:
    url, app_name = fragile
    await eventually(lambda: _answers(url), timeout=120, what="the app's replica")
    marker = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=1)) as http:
        assert (await http.get("/ok")).status_code == 200  # the connection has carried a request
        await _kill_the_replica(app_name)
        response = await http.post("/threads", json={"metadata": {"probe": marker}})
    assert _answered_or_told_to_retry(response), (response.status_code, response.headers, response.text)
    await eventually(lambda: _answers(url), timeout=120, what="Serve's new replica")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        found = (await http.post("/threads/search", json={"metadata": {"probe": marker}})).json()
    # done once when answered; a 503 said it may not have been (at most once, never twice)
    assert len(found) == 1 if response.status_code == 200 else len(found) <= 1, found


async def test_a_post_the_dying_replica_held_is_never_replayed(fragile: tuple[str, str]) -> None:
    url, app_name = fragile
    await eventually(lambda: _answers(url), timeout=120, what="the app's replica")
    async with httpx.AsyncClient(base_url=url, timeout=30) as other:
        thread_id = (await other.post("/threads", json={})).json()["thread_id"]

        async def its_run_started() -> bool:
            runs = (await other.get(f"/threads/{thread_id}/runs")).json()
            return bool(runs) and runs[0]["status"] == "running"

        async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=1)) as http:
            assert (await http.get("/ok")).status_code == 200  # the POST is not the connection's first
            held = asyncio.create_task(http.post(f"/threads/{thread_id}/runs/wait", json={
                "assistant_id": "echo", "input": {"items": [], "sleep": 4}}))
            await eventually(its_run_started, timeout=60, what="the run to start")
            await _kill_the_replica(app_name)
            try:
                response = await held
                outcome = f"HTTP {response.status_code}"
                assert response.status_code == 503 and response.headers.get("retry-after"), \
                    (response.status_code, response.text)
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                outcome = type(exc).__name__  # HAProxy's abort keep-alive: closed, no status
    await eventually(lambda: _answers(url), timeout=120, what="Serve's new replica")
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def its_run_ended() -> list:
            runs = (await http.get(f"/threads/{thread_id}/runs")).json()
            return runs if runs and all(run["status"] == "success" for run in runs) else []

        runs = await eventually(its_run_ended, timeout=60, what="the held run to end")
    assert len(runs) == 1, (outcome, runs)  # created once: the POST was not replayed anywhere
