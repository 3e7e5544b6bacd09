"""Two installations sharing one Ray cluster (what ``actor_name_prefix`` is for) must not share
workspaces: each one's `default` workspace is its own container, labelled with its own
installation id."""

from __future__ import annotations

import uuid

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspacePathNotFound
from sandbox.client import get_workspace
from sandbox.deployments.docker import LABEL_INSTALLATION
from tests.e2e.conftest import SMALL_SANDBOX, remove_workspaces


def _installation(tmp_path, tag: str) -> Settings:
    unique = uuid.uuid4().hex[:8]
    return Settings(_env_file=None, data_dir=tmp_path / tag, actor_name_prefix=f"{tag}{unique}-",
                    sandbox_installation_id=f"e2e{tag}{unique}", **SMALL_SANDBOX)


@pytest.fixture
def two_installations(ray_cluster: None, docker_client, tmp_path):
    first, second = _installation(tmp_path, "a"), _installation(tmp_path, "b")
    yield first, second
    for settings in (first, second):
        remove_workspaces(settings, docker_client)


async def test_each_installation_gets_its_own_default_workspace(two_installations, docker_client):
    first, second = two_installations
    mine = await get_workspace("default", first)
    theirs = await get_workspace("default", second)
    await mine.write_file("owner.txt", "first installation\n")

    with pytest.raises(WorkspacePathNotFound):
        await theirs.read_file("owner.txt")
    for settings in (first, second):
        label = f"{LABEL_INSTALLATION}={settings.sandbox_installation_id}"
        assert len(docker_client.containers.list(filters={"label": label})) == 1
