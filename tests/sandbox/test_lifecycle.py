"""Lifecycle of workspace actors and containers: get-or-create, default workspace, re-attach
after an actor restart, container server revival, stop/start/destroy, idle stop, events, bad input."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import ray

from quadracode_ray import NAMESPACE
from quadracode_ray.interfaces.workspace import (
    WorkspaceClient,
    WorkspaceConflict,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspaceNotFound,
    WorkspaceUnavailable,
)
from sandbox.client import DEFAULT_WORKSPACE, existing_workspace, get_workspace
from sandbox.deployments.docker import LABEL_INSTALLATION, LABEL_WORKSPACE
from sandbox.models import WorkspaceSpec
from sandbox.testing.conformance import poll_until

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _containers(docker_client, settings, workspace_id):
    return docker_client.containers.list(all=True, filters={"label": [
        f"{LABEL_WORKSPACE}={workspace_id}", f"{LABEL_INSTALLATION}={settings.sandbox_installation_id}"]})


async def _until_ok(call, deadline_s: float = 30.0):
    """Retry ``call`` while the actor restarts (WorkspaceUnavailable), up to a deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return await call()
        except WorkspaceUnavailable:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.05)


async def test_default_workspace_is_always_obtainable_and_get_is_idempotent(sandbox_settings, docker_client):
    settings = sandbox_settings()
    first = await get_workspace(DEFAULT_WORKSPACE, settings)
    second = await get_workspace(DEFAULT_WORKSPACE, settings)
    assert isinstance(first, WorkspaceClient) and first.workspace_id == "default"
    assert (await first.info()).container_id == (await second.info()).container_id
    assert len(_containers(docker_client, settings, "default")) == 1
    info = await first.info()
    if info.disk_quota_bytes:  # /workspace is its own quota file system, mounted on the host
        assert os.path.ismount(info.volume_name) and info.disk_quota_bytes > 0
    else:
        volume = docker_client.volumes.get(info.volume_name)
        assert volume.attrs["Labels"][LABEL_WORKSPACE] == "default"
        assert volume.attrs["Labels"][LABEL_INSTALLATION] == settings.sandbox_installation_id
    assert ray.get_actor("workspace:default", namespace=NAMESPACE) is not None
    assert (await existing_workspace("default", settings).exec("echo hi")).stdout == "hi\n"


async def test_unknown_and_invalid_workspaces_are_refused(sandbox_settings):
    with pytest.raises(WorkspaceNotFound):
        existing_workspace("never-created", sandbox_settings())
    for bad in ("", "../x", "a b", "-lead", "x" * 64):
        with pytest.raises(WorkspaceInvalidRequest):
            await get_workspace(bad, sandbox_settings())


async def test_actor_restart_reattaches_to_the_same_container_with_files_intact(sandbox_settings, docker_client):
    settings = sandbox_settings()
    client = await get_workspace("restart", settings)
    await client.write_file("keep/me.txt", b"precious")
    job = await client.start_process("echo alive; sleep 300")
    before = await client.info()
    old_pid = (await client.ping()).pid

    ray.kill(client.handle, no_restart=False)

    async def restarted():
        pid = (await client.ping()).pid
        if pid == old_pid:
            raise WorkspaceUnavailable("not restarted yet")
        return pid

    await _until_ok(restarted)
    assert await client.read_file("keep/me.txt") == b"precious"
    after = await client.info()
    assert after.container_id == before.container_id and after.status == "running"
    assert len(_containers(docker_client, settings, "restart")) == 1
    # The container server (and the job it owns) lives in the container, so it outlived the actor.
    polled = await client.poll_process(job.process_id)
    assert polled.process.status == "running" and polled.stdout == "alive\n"
    await client.kill_process(job.process_id)


async def test_a_killed_container_server_is_restarted_transparently(sandbox_settings, docker_client):
    settings = sandbox_settings()
    client = await get_workspace("revive", settings)
    assert (await client.exec("echo before")).stdout == "before\n"
    container = _containers(docker_client, settings, "revive")[0]
    # As a crash would (the workspace user cannot: see test_hostile.py).
    killed = container.exec_run(["sh", "-c", "kill -9 $(cat /run/quadracode/exec.sock.lock)"], user="0:0")
    assert killed.exit_code == 0
    assert (await client.exec("echo after")).stdout == "after\n"


async def test_stop_start_info_destroy(sandbox_settings, docker_client):
    settings = sandbox_settings()
    client = await get_workspace("lifecycle", settings)
    await client.write_file("data.txt", b"survives stop")
    info = await client.info()
    assert info.status == "running" and info.limits.memory_mb == 256 and info.limits.pids_limit == 128
    assert info.limits.network is False and info.disk_usage_bytes is not None and info.disk_usage_bytes > 0

    assert (await client.stop()).status == "stopped"
    assert (await client.read_file("data.txt")) == b"survives stop"  # starts again on demand
    assert (await client.info()).status == "running"

    await client.destroy(remove_volume=False)
    assert _containers(docker_client, settings, "lifecycle") == []
    assert (await client.read_file("data.txt")) == b"survives stop"  # volume kept, container re-made
    await client.destroy(remove_volume=True)
    assert _containers(docker_client, settings, "lifecycle") == []
    assert not docker_client.volumes.list(filters={"name": f"qr-{settings.sandbox_installation_id}-ws-lifecycle"})
    assert (await client.info()).status == "missing"


async def test_spec_conflict_is_refused_and_changes_nothing(sandbox_settings):
    settings = sandbox_settings()
    client = await get_workspace("spec", settings, spec=WorkspaceSpec(memory_mb=128))
    assert (await client.info()).limits.memory_mb == 128
    with pytest.raises(WorkspaceConflict, match="destroy it first"):
        await get_workspace("spec", settings, spec=WorkspaceSpec(memory_mb=512))
    assert (await client.info()).limits.memory_mb == 128
    await client.destroy(remove_volume=True)


async def test_idle_workspace_is_stopped_not_destroyed(sandbox_settings, docker_client):
    settings = sandbox_settings(sandbox_idle_stop_s=0.5)
    client = await get_workspace("idle", settings)
    await client.write_file("f.txt", b"still here")
    container = _containers(docker_client, settings, "idle")[0]

    def status():
        container.reload()
        return container.status

    async def probe():
        return await asyncio.to_thread(status)

    assert await poll_until(probe, lambda s: s == "exited", deadline_s=20) == "exited"
    assert (await client.read_file("f.txt")) == b"still here"  # started again on demand
    stops = await client.recent_events("idle_stop")
    assert stops and stops[0].outcome == "ok"
    await client.destroy(remove_volume=True)


async def test_every_operation_produces_an_event(sandbox_settings):
    client = await get_workspace("events", sandbox_settings())
    await client.exec("true")
    with pytest.raises(WorkspaceError):
        await client.read_file("../nope")
    events = await client.recent_events()
    ops = [(e.operation, e.outcome) for e in events]
    assert ("exec", "ok") in ops and ("read_file", "error") in ops
    failed = [e for e in events if e.operation == "read_file"][-1]
    assert failed.workspace_id == "events" and "PathEscapeError" in failed.error and failed.duration_ms >= 0


async def test_missing_image_is_a_clear_error_and_creates_nothing(sandbox_settings, docker_client):
    from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
    from sandbox.service import WorkspaceService

    settings = sandbox_settings(workspace_image="qr-no-such-image:never")
    service = WorkspaceService(DockerDeployment("no-image", DockerDeploymentConfig.from_settings(settings)), settings)
    with pytest.raises(WorkspaceUnavailable, match="qr-no-such-image:never is missing"):
        await service.exec("true")
    assert _containers(docker_client, settings, "no-image") == []
    service.close()


async def test_docker_calls_never_block_the_actor(sandbox_settings):
    from sandbox.client import WorkspaceSandboxClient, workspace_actor

    client = WorkspaceSandboxClient(workspace_actor("unblocked", sandbox_settings()), "unblocked")
    await client.ping()  # the actor exists; its container does not yet
    creating = asyncio.ensure_future(client.ensure())  # Docker: volumes, create, start, container server
    long_exec = None
    try:
        pinged = asyncio.ensure_future(client.ping())
        done, _ = await asyncio.wait({creating, pinged}, return_when=asyncio.FIRST_COMPLETED)
        assert pinged in done and not creating.done()  # answered while Docker was still busy
        await creating
        long_exec = asyncio.ensure_future(client.exec("sleep 2; echo slow"))
        quick = await client.exec("echo quick")
        assert quick.stdout == "quick\n" and not long_exec.done()
        assert (await long_exec).stdout == "slow\n"
    finally:
        await client.destroy(remove_volume=True)


async def test_client_travels_to_other_ray_workers(sandbox_settings):
    client = await get_workspace(DEFAULT_WORKSPACE, sandbox_settings())

    @ray.remote(num_cpus=0)
    def run_elsewhere(workspace) -> str:
        return asyncio.run(workspace.exec("echo from-a-task")).stdout

    assert await run_elsewhere.remote(client) == "from-a-task\n"
