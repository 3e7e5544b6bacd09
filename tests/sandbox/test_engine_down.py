"""A Docker engine that is down (its socket gone, as while it restarts) gives the typed
WorkspaceUnavailable at every entry, never requests' ConnectionError: pure, no engine needed."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.service import WorkspaceService


@pytest.fixture
def engine_gone(tmp_path: Path) -> tuple[Settings, docker.DockerClient]:
    settings = Settings(_env_file=None, data_dir=tmp_path, sandbox_installation_id="enginedown")
    # A pinned API version: docker-py then connects only when asked (no version probe at construction).
    return settings, docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")


@pytest.mark.parametrize("operation", ["exists", "ensure", "start", "stop", "is_running", "info", "launch_server"])
def test_every_deployment_operation_says_unavailable(engine_gone, operation: str) -> None:
    settings, client = engine_gone
    deployment = DockerDeployment("w1", DockerDeploymentConfig.from_settings(settings), client=client)
    args = {"ensure": (None,)}.get(operation, ())
    with pytest.raises(WorkspaceUnavailable, match="the Docker engine is unavailable"):
        getattr(deployment, operation)(*args)


async def test_an_exec_while_the_engine_is_down_is_unavailable(engine_gone) -> None:
    settings, client = engine_gone
    deployment = DockerDeployment("w1", DockerDeploymentConfig.from_settings(settings), client=client)
    service = WorkspaceService(deployment, settings)
    service._ready = True  # an attached workspace whose container went with the engine: the socket is dead
    deployment.run_dir.mkdir(parents=True)
    with pytest.raises(WorkspaceUnavailable, match="Docker engine is unavailable"):
        await service.exec("true", timeout=5)
    events = service.events.events("exec")
    assert events[-1].outcome == "error" and "WorkspaceUnavailable" in events[-1].error
