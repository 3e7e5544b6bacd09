"""The sandbox conformance suite, run against the Docker backend: through the Ray actor (what
the system uses) and in-process (the WorkspaceService the actor wraps)."""

from __future__ import annotations

import pytest

from sandbox.client import get_workspace
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.service import WorkspaceService
from sandbox.testing.conformance import SandboxConformance
from tests.sandbox.conftest import OUTPUT_LIMIT


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
        service = WorkspaceService(DockerDeployment("conformance-local", DockerDeploymentConfig.from_settings(settings)), settings)
        await service.ensure()
        yield service
        await service.destroy(remove_volume=True)
        service.close()
