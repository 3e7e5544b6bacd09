"""Test helpers shipped with the sandbox: the conformance suite and Docker cleanup."""

from __future__ import annotations

from sandbox.deployments.disk import release_installation_disks
from sandbox.deployments.docker import LABEL_INSTALLATION


def remove_installation(installation_id: str, docker_client=None) -> int:
    """Remove every container and volume labelled with ``installation_id`` (a test session's,
    say), and unmount its workspaces' disks; returns how many were removed. Never touches
    other installations."""
    import docker

    client = docker_client or docker.from_env()
    label = f"{LABEL_INSTALLATION}={installation_id}"
    removed = 0
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
        removed += 1
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
        removed += 1
    return removed + release_installation_disks(installation_id)
