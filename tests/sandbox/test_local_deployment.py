"""The local deployment's own lifecycle (the conformance suite covers its operations): no
Docker, the container server as a host subprocess over a temporary folder."""

from __future__ import annotations

import os

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.deployments import Deployment
from sandbox.deployments.local import LocalDeployment, LocalDeploymentConfig
from sandbox.service import WorkspaceService
from sandbox.testing.conformance import poll_until


@pytest.fixture
def make_service(tmp_path):
    services: list[WorkspaceService] = []

    def make(workspace_id: str = "w", **config) -> WorkspaceService:
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", sandbox_installation_id="local",
                            sandbox_idle_stop_s=0, sandbox_kill_grace_s=0.5)
        deployment = LocalDeployment(workspace_id, LocalDeploymentConfig(root=tmp_path / "ws", **config))
        services.append(WorkspaceService(deployment, settings))
        return services[-1]

    yield make
    for service in services:  # never leave a server running on the host
        service.deployment.stop()
        service.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_it_is_a_deployment_whose_files_are_host_files(make_service, tmp_path):
    service = make_service()
    assert isinstance(service.deployment, Deployment)
    info = await service.ensure()
    assert info.status == "running" and info.workspace_id == "w"
    await service.write_file("a.txt", b"on the host")
    assert (tmp_path / "ws" / "w" / "workspace" / "a.txt").read_bytes() == b"on the host"
    assert (await service.exec("pwd")).stdout == f"{(tmp_path / 'ws' / 'w' / 'workspace').resolve()}\n"


async def test_stop_ends_the_server_and_its_background_jobs_and_start_brings_it_back(make_service):
    service = make_service()
    await service.ensure()
    job = await service.start_process("echo up; sleep 300")
    await poll_until(lambda: service.poll_process(job.process_id), lambda out: "up" in out.stdout)
    assert _alive(job.pid)
    stopped = await service.stop()
    assert stopped.status == "stopped"
    assert await poll_until(lambda: _still_alive(job.pid), lambda alive: not alive) is False
    assert (await service.start()).status == "running"
    assert (await service.exec("echo back")).stdout == "back\n"


async def _still_alive(pid: int) -> bool:
    return _alive(pid)


async def test_destroy_removes_the_folder_and_a_later_call_recreates_it(make_service, tmp_path):
    service = make_service()
    await service.write_file("doomed.txt", b"x")  # the first operation creates and starts it
    await service.destroy(remove_volume=True)
    assert not (tmp_path / "ws" / "w").exists()
    assert (await service.info()).status == "missing"
    assert (await service.list_files()) == []  # ensured again, empty


async def test_a_server_that_cannot_start_is_a_clear_error(make_service):
    service = make_service(python="/nonexistent/python3")
    with pytest.raises(WorkspaceUnavailable, match="cannot start the local server"):
        await service.exec("true")
    broken = make_service("broken", python=os.path.realpath("/bin/false"))
    with pytest.raises(WorkspaceUnavailable, match="did not start"):
        await broken.exec("true")
