"""The conformance suites against every implementation of the workspace protocol:

- the shipped in-memory ``FakeWorkspace``: the base set;
- the local deployment (the container server as a host subprocess over a temporary folder,
  no Docker): the extended set, which includes the base set;
- the Docker deployment, in-process (``WorkspaceService``) and through the Ray actor (what the
  system uses): the extended set.
"""

from __future__ import annotations

import os

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.testing import FakeWorkspace
from sandbox.client import get_workspace
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.deployments.local import LocalDeployment, LocalDeploymentConfig
from sandbox.service import WorkspaceService
from sandbox.testing.conformance import SandboxConformance, WorkspaceClientConformance
from tests.sandbox.conftest import OUTPUT_LIMIT


class TestFakeWorkspaceConformance(WorkspaceClientConformance):
    @pytest.fixture
    def sandbox(self):
        return FakeWorkspace("fake")


class TestLocalDeploymentConformance(SandboxConformance):
    output_limit = OUTPUT_LIMIT
    sandbox_uid = os.getuid()  # commands run as whoever started the server: no isolation

    @pytest.fixture(scope="class")
    @classmethod
    def local_root(cls, tmp_path_factory):
        return tmp_path_factory.mktemp("local-deployment")

    @pytest.fixture(scope="class")
    @classmethod
    async def sandbox(cls, local_root):
        root = local_root.resolve()
        cls.workspace_root = str(root / "ws" / "conformance" / "workspace")
        cls.shared_root = str(root / "ws" / "shared")
        settings = Settings(_env_file=None, data_dir=root / "data", sandbox_installation_id="local",
                            sandbox_output_limit_bytes=OUTPUT_LIMIT, sandbox_kill_grace_s=0.5, sandbox_idle_stop_s=0)
        service = WorkspaceService(LocalDeployment("conformance", LocalDeploymentConfig(root=root / "ws")), settings)
        await service.ensure()
        yield service
        await service.destroy(remove_volume=True)
        service.close()


class TestDockerActorConformance(SandboxConformance):
    output_limit = OUTPUT_LIMIT

    @pytest.fixture(scope="class")
    @classmethod
    async def sandbox(cls, ray_cluster, sandbox_settings):
        client = await get_workspace("conformance-actor", sandbox_settings())
        yield client
        await client.destroy(remove_volume=True)


class TestDockerServiceConformance(SandboxConformance):
    output_limit = OUTPUT_LIMIT

    @pytest.fixture(scope="class")
    @classmethod
    async def sandbox(cls, sandbox_settings):
        settings = sandbox_settings()
        service = WorkspaceService(DockerDeployment("conformance-local", DockerDeploymentConfig.from_settings(settings)),
                                   settings)
        await service.ensure()
        yield service
        await service.destroy(remove_volume=True)
        service.close()
