"""The fault suite: each fault in turn under a steady load, then an audit that nothing is lost.

The whole system (the actor fabric with real graphs and Docker sandboxes, the Serve app) runs on
the session's Ray against a Postgres of this module's own, which one fault stops and restarts.
For each fault: a load of background runs, streams, store puts and delegated agent tasks
(tests/reliability/load.py) runs; the fault is injected mid-work; the test waits until a fresh
run succeeds (time to recover); the load goes on a little, stops, and the audit checks that every
acknowledged run, store item, task, envelope and checkpoint is there and that every run ended
once. Each fault run replaces its row of bench/reports/faults.md (written at the end of the
module; the rows of faults not run keep theirs, each row dated).

Killing processes: only those of this module's installation (its actors, found by name, and
its Serve replica), by pid, with SIGKILL; never anything of another test or session. The one
exception is the Docker engine restart, which stops every container on the engine: the engine is
always started again before the test ends (tests/reliability/docker_engine.py), and a workspace
of another installation comes back on its next operation, as this one's does. On a shared
machine run that test alone (``/work/team/heavy --exclusive``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from actors.common import AGENT_PREFIX, EVENTS, ORCHESTRATOR, REGISTRY, actor_name
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from tests.api.test_replica_death import _replica_pids
from tests.polling import eventually
from tests.reliability import docker_engine, rig
from tests.reliability.load import STREAM_RECONNECT_WARNING, Load, audit, delegate, query

pytestmark = [pytest.mark.slow, STREAM_RECONNECT_WARNING]

REPORT = Path(__file__).resolve().parents[2] / "bench" / "reports" / "faults.md"
ROWS: list[dict] = []
POSTGRES_DOWN_S = 10.0
FAULTS = ("Postgres stopped and restarted", "Docker engine restarted", "run executor SIGKILL", "orchestrator SIGKILL",
          "registry SIGKILL", "event bus SIGKILL", "agent SIGKILL", "Serve replica SIGKILL")
"""The report's rows, in this order."""


@pytest.fixture(scope="module")
def faulty(ray_cluster: None, serve_http_port: int, docker_client,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[rig.Stack]:
    postgres, database_url = rig.start_postgres()
    settings = rig.settings_for(database_url, tmp_path_factory.mktemp("faults"), fleet_max_agents=2)
    app_name = f"faults-{uuid.uuid4().hex[:6]}"
    try:
        url = rig.deploy(settings, serve_http_port, app_name)
        yield rig.Stack(url=url, app_name=app_name, settings=settings, postgres=postgres)
        write_report()
    finally:
        if not postgres.is_running():
            postgres.start()
        rig.teardown(settings, app_name)
        postgres.stop()


def actor_pid(name: str) -> int:
    handle = ray.get_actor(name, namespace=NAMESPACE)
    return ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()), timeout=60)


def agent_names(settings: Settings) -> list[str]:
    prefix = settings.actor_name_prefix + AGENT_PREFIX
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)]


async def a_fresh_run_succeeds(url: str) -> bool:
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=20)
    try:
        thread = (await client.threads.create())["thread_id"]
        values = await asyncio.wait_for(client.runs.wait(thread, "echo", input={"items": []}), 30)
        return isinstance(values, dict) and values.get("items") == ["a"]
    except Exception:
        return False


async def under_load(stack: rig.Stack, fault: str, inject: Callable[[], Awaitable[str]],
                     recovered: Callable[[], Awaitable[bool]] | None = None) -> Load:
    """Load, the fault mid-work, recovery (``recovered``, else a fresh run succeeding), more load,
    audit; a report row; no loss allowed."""
    load = Load(stack.url)
    load.start()
    try:
        await eventually(lambda: load.acknowledged_at_least(6), timeout=180, what="the load to get going")
        if fault == "agent SIGKILL":
            await eventually(lambda: asyncio.to_thread(agent_names, stack.settings), timeout=180,
                             what="an agent at work")
        held = len(load.acked.runs)
        injected_at = time.monotonic()
        detail = await inject()
        await eventually(recovered or (lambda: a_fresh_run_succeeds(stack.url)), timeout=180,
                         what="recovery from the fault")
        recovered_s = time.monotonic() - injected_at
        after = len(load.acked.runs)
        await eventually(lambda: load.acknowledged_at_least(after + 6), timeout=120, what="the load to go on")
    finally:
        await load.stop()
    problems = await audit(stack.settings.database_url, load)
    ROWS.append({"fault": fault, "detail": detail, "runs": len(load.acked.runs), "held_before": held,
                 "store": len(load.acked.store_items), "tasks": len(load.acked.tasks),
                 "calls": sum(load.calls.values()), "failed": load.failed_summary(),
                 "recovered_s": recovered_s, "lost": "; ".join(problems) or "0"})
    assert not problems, problems
    return load


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# --- the faults ----------------------------------------------------------------------------------
async def test_postgres_stopped_and_restarted(faulty: rig.Stack) -> None:
    answers: list[tuple[int, str | None]] = []

    async def inject() -> str:
        thread = (await httpx.AsyncClient(timeout=30).post(f"{faulty.url}/threads", json={})).json()["thread_id"]
        await asyncio.to_thread(faulty.postgres.stop)
        down_until = time.monotonic() + POSTGRES_DOWN_S
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < down_until:
                for response in await asyncio.gather(http.get(f"{faulty.url}/threads/{thread}"),
                                                     http.post(f"{faulty.url}/threads", json={}),
                                                     return_exceptions=True):
                    if isinstance(response, httpx.Response):
                        answers.append((response.status_code, response.headers.get("retry-after")))
                await asyncio.sleep(0.5)
        await asyncio.to_thread(faulty.postgres.start)
        codes = sorted({code for code, _ in answers})
        return f"down {POSTGRES_DOWN_S:.0f} s; API answers while down: {codes}"

    await under_load(faulty, "Postgres stopped and restarted", inject)
    assert answers and all(code != 500 for code, _ in answers), answers
    assert any(code == 503 and retry for code, retry in answers), answers


async def test_the_docker_engine_restarted(faulty: rig.Stack) -> None:
    """The engine stopped (every container with it) and started again under load: an exec during the
    outage is a typed WorkspaceUnavailable (503 over HTTP); an agent task given during the outage ends
    and reports that error (the engine stays down until it has); the workspace re-attaches with its
    files on its next operation."""
    from langgraph_sdk import get_client

    from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE, WorkspaceUnavailable
    from sandbox.client import get_workspace

    why_not = docker_engine.can_restart()
    assert why_not is None, f"this fault restarts the local Docker engine: {why_not}"
    workspace = await get_workspace(DEFAULT_WORKSPACE, faulty.settings)
    marker, content = f"engine-restart-{uuid.uuid4().hex[:8]}.txt", uuid.uuid4().hex
    await workspace.write_file(marker, content)
    during: dict[str, Any] = {}

    async def task_ended(task_id: str) -> dict | None:
        found = await query(faulty.settings.database_url,
                            "SELECT status, result FROM qr_tasks WHERE task_id = %s", task_id)
        return found[0] if found and found[0]["status"] not in ("pending", "running") else None

    async def inject() -> str:
        started = time.monotonic()
        await asyncio.to_thread(docker_engine.stop)
        during["stopped_s"] = time.monotonic() - started
        try:
            with pytest.raises(WorkspaceUnavailable) as raised:
                await asyncio.wait_for(workspace.exec("true", timeout=10), 60)
            during["exec"] = str(raised.value)
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(f"{faulty.url}/workspaces/{DEFAULT_WORKSPACE}/exec",
                                           json={"command": "true"})
            during["http"] = response.status_code
            client = get_client(url=faulty.url, timeout=120)
            task_id = await delegate(client, (await client.threads.create())["thread_id"],
                                     f"write during-outage.txt with content {content}")
            assert task_id, "the orchestrator did not delegate during the outage"
            during["task"] = await eventually(lambda: task_ended(task_id), timeout=180,
                                              what="the task given during the outage to end")
        finally:
            down_s = time.monotonic() - started
            started = time.monotonic()
            await asyncio.to_thread(docker_engine.start)
            during["started_s"] = time.monotonic() - started
        return (f"dockerd stopped ({during['stopped_s']:.1f} s), kept down {down_s:.0f} s, started "
                f"({during['started_s']:.1f} s); while down: exec WorkspaceUnavailable, HTTP exec "
                f"{during['http']}, an agent task {during['task']['status']} with the error")

    async def reattached_with_its_files() -> bool:
        try:
            return (await workspace.exec(f"cat {marker}", timeout=30)).stdout == content
        except WorkspaceUnavailable:
            return False

    with docker_engine.restored():
        await under_load(faulty, "Docker engine restarted", inject, recovered=reattached_with_its_files)
    assert "Docker engine is unavailable" in during["exec"], during
    assert during["http"] == 503, during
    # The agent reported the outage (a failed task naming the error), or retried until it passed.
    task = during["task"]
    assert (task["status"] == "failed" and "WorkspaceUnavailable" in str(task["result"])) \
        or task["status"] == "succeeded", task
    assert await workspace.read_text(marker) == content


@pytest.mark.parametrize("target", ["run executor", "orchestrator", "registry", "event bus"])
async def test_a_fabric_actor_sigkilled_mid_work(faulty: rig.Stack, target: str) -> None:
    from actors.run_executor import executor_names

    name = {"run executor": lambda: executor_names(faulty.settings, faulty.settings.database_url)[0],
            "orchestrator": lambda: actor_name(faulty.settings, ORCHESTRATOR),
            "registry": lambda: actor_name(faulty.settings, REGISTRY),
            "event bus": lambda: actor_name(faulty.settings, EVENTS)}[target]()

    async def inject() -> str:
        pid = await asyncio.to_thread(actor_pid, name)
        sigkill(pid)
        return f"SIGKILL of pid {pid} ({name})"

    await under_load(faulty, f"{target} SIGKILL", inject)


async def test_an_agent_sigkilled_mid_task(faulty: rig.Stack) -> None:
    async def inject() -> str:
        name = (await asyncio.to_thread(agent_names, faulty.settings))[0]
        pid = await asyncio.to_thread(actor_pid, name)
        sigkill(pid)
        return f"SIGKILL of pid {pid} ({name})"

    await under_load(faulty, "agent SIGKILL", inject)


async def test_the_serve_replica_sigkilled_mid_work(faulty: rig.Stack) -> None:
    async def inject() -> str:
        pids = await asyncio.to_thread(_replica_pids, faulty.app_name)
        for pid in pids:
            sigkill(pid)
        return f"SIGKILL of the API replica (pid {', '.join(map(str, pids))})"

    load = await under_load(faulty, "Serve replica SIGKILL", inject)
    # What a client sees of the requests the dying replica held: a 503 with Retry-After (from
    # Serve's Python proxy, serve_app/proxy_errors.py; in HAProxy mode from HAProxy's error page,
    # quadracode_ray/haproxy_errors.py, or its backup proxy), or, in HAProxy mode, its keep-alive
    # connection closed without a status (RemoteProtocolError: HAProxy's "abort keep-alive", the
    # client may retry a request it knows is safe; ReadError when it ends as a reset), or a started
    # stream cut short. Never a 500, 502 or 504, and never a 503 without Retry-After.
    allowed = {"HTTP 503 with Retry-After", "RemoteProtocolError", "ReadError"}
    assert {how for _, how in load.failures} <= allowed, load.failed_summary()


HEADER = ("| fault | what was done | load held (runs acked before / in all, store items, tasks) | calls | "
          "requests failed, and how | time to recover | items lost | run at (UTC), load average |")


def write_report() -> None:
    """The report's table: this run's rows, and the rows of faults not run this time kept as they were
    (each row says when it was measured), in the suite's order."""
    existing = REPORT.read_text() if REPORT.exists() else ""
    kept = {line.split(" | ")[0][2:]: line for line in existing.splitlines()
            if line.startswith("| ") and not line.startswith(("| fault ", "| ---"))}
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M}, {os.getloadavg()[0]:.1f}"
    for row in ROWS:
        kept[row["fault"]] = (
            f"| {row['fault']} | {row['detail']} | {row['held_before']} / {row['runs']}, {row['store']}, "
            f"{row['tasks']} | {row['calls']} | {row['failed']} | {row['recovered_s']:.1f} s | {row['lost']} | {when} |")
    order = {fault: i for i, fault in enumerate(FAULTS)}
    lines = ["# Faults", "",
             f"Written by `tests/reliability/test_faults.py`, on a shared machine of {os.cpu_count()} cores "
             "(the load average of each run is in its row).", "",
             "Each fault in turn under a load of 6 clients (background runs joined, streamed runs, store "
             "puts) plus one client delegating tasks to a coder agent; then an audit of everything the API "
             "acknowledged (tests/reliability/load.py).", "",
             HEADER, "| --- | --- | --- | ---: | --- | ---: | --- | --- |",
             *sorted(kept.values(), key=lambda line: order.get(line.split(" | ")[0][2:], len(order))),
             "", "Time to recover: from the fault until a new thread's run succeeds end to end (for the Docker "
             "engine: until the workspace answers again with its files).", ""]
    marker = "\n## Whole system killed"
    tail = existing[existing.index(marker):] if marker in existing else ""
    REPORT.write_text("\n".join(lines) + tail)
