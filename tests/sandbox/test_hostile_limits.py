"""A hostile workspace against its limits, on the real Docker engine: the disk quota holds with
``dd`` (ENOSPC inside, a typed error through the API, usage reported against it); a fork bomb
in one workspace leaves another workspace answering within 1 s; bad input gets typed errors."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from quadracode_ray.interfaces.workspace import WorkspaceDiskFull, WorkspaceInvalidRequest
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.service import WorkspaceService
from tests.polling import eventually
from tests.sandbox.conftest import DISK_QUOTA_MB
from tests.sandbox.container_stats import container_pids

QUOTA_MB = 64


async def _service(settings, name: str) -> WorkspaceService:
    service = WorkspaceService(DockerDeployment(name, DockerDeploymentConfig.from_settings(settings)), settings)
    await service.ensure()
    return service


@pytest.fixture(scope="module")
async def small_disk(sandbox_settings):
    service = await _service(sandbox_settings(sandbox_disk_quota_mb=QUOTA_MB), "small-disk")
    yield service
    await service.destroy(remove_volume=True)
    service.close()


async def test_the_disk_quota_holds_with_dd(small_disk):
    result = await small_disk.exec("dd if=/dev/zero of=big bs=1M count=200", timeout=120)
    assert result.exit_code != 0 and "No space left on device" in result.stderr
    info = await small_disk.info()
    assert (QUOTA_MB - 12) << 20 < info.disk_quota_bytes <= QUOTA_MB << 20
    assert info.disk_usage_bytes > info.disk_quota_bytes * 0.9  # full, and reported so
    with pytest.raises(WorkspaceDiskFull, match="disk quota is full"):
        await small_disk.write_file("more.bin", b"x" * (8 << 20))
    assert "more.bin" not in [e.path for e in await small_disk.list_files(".")]  # no half file left
    image = small_disk.deployment.disk.image
    assert image.stat().st_blocks * 512 < (QUOTA_MB + 16) << 20  # the host gave no more than the quota
    # /shared is bounded the same way (one file system for the installation, sized by the first
    # workspace that made it: this session's 512 MiB or this module's 64).
    shared = await small_disk.exec("fallocate -l 2G /shared/too-big; df -B1 --output=size /shared | tail -1; "
                                   "rm -f /shared/too-big")  # ext4 keeps what it could allocate
    assert "No space left on device" in shared.stderr
    assert int(shared.stdout) <= DISK_QUOTA_MB << 20
    await small_disk.delete("big")
    await small_disk.write_file("more.bin", b"x" * (8 << 20))  # room again
    assert (await small_disk.exec("stat -c %s more.bin")).stdout.strip() == str(8 << 20)


async def test_a_fork_bomb_leaves_another_workspace_answering_within_a_second(sandbox_settings, docker_client):
    settings = sandbox_settings()
    bomber, neighbour = await asyncio.gather(_service(settings, "bomber"), _service(settings, "neighbour"))
    try:
        host = docker_client.containers.get(bomber.deployment.container_name).attrs["HostConfig"]
        assert host["NanoCpus"] == 1_000_000_000 and host["CpuShares"] == 256  # below the 2 cores, below 1024
        # A fork bomb, and the shell itself spinning: every pid and all the CPU it may have.
        bomb = asyncio.ensure_future(bomber.exec(":(){ :|:& };: ; while :; do :; done", timeout=20))
        lags = []
        bomb_container = docker_client.containers.get(bomber.deployment.container_name)
        await eventually(lambda: asyncio.to_thread(lambda: container_pids(bomb_container) >= settings.sandbox_pids_limit - 8),
                         timeout=15, what="the fork bomb at its pids limit")
        for _ in range(5):
            started = time.monotonic()
            assert (await neighbour.exec("echo ok", timeout=10)).stdout == "ok\n"
            lags.append(time.monotonic() - started)
        assert not bomb.done()  # measured while the bomb ran
        assert statistics.median(lags) < 1.0 and max(lags) < 2.0, lags
        result = await bomb  # killed at its timeout, or its shell gave up forking
        assert result.timed_out or result.exit_code != 0
    finally:
        await asyncio.gather(bomber.destroy(remove_volume=True), neighbour.destroy(remove_volume=True))
        bomber.close()
        neighbour.close()


async def test_bad_input_gets_typed_errors_and_changes_nothing(small_disk):
    with pytest.raises(WorkspaceInvalidRequest, match="longer than 100000 bytes"):
        await small_disk.exec("echo " + "x" * 200_000)
    with pytest.raises(WorkspaceInvalidRequest, match="number"):
        await small_disk.exec("echo hi", timeout="10")
    with pytest.raises(WorkspaceInvalidRequest, match="path longer than|deeper than"):
        await small_disk.mkdir("/".join(["d"] * 3000))
    with pytest.raises(WorkspaceInvalidRequest, match="longer than 255 bytes"):
        await small_disk.write_file("n" * 5000, b"x")
    await small_disk.exec("mkfifo pipe")
    started = time.monotonic()
    with pytest.raises(WorkspaceInvalidRequest, match="not a regular file"):
        await small_disk.read_file("pipe")
    assert time.monotonic() - started < 10  # never the 300 s of a hung read
    assert sorted(e.path for e in await small_disk.list_files(".")) in (["pipe"], ["more.bin", "pipe"])
    assert (await small_disk.exec("echo still fine")).stdout == "still fine\n"
