"""Test helpers shipped with the sandbox: the conformance suite and Docker cleanup."""

from __future__ import annotations

from sandbox.deployments import firewall
from sandbox.deployments.disk import release_installation_disks
from sandbox.deployments.docker import LABEL_INSTALLATION, LABEL_WORKSPACE


def remove_installation(installation_id: str, docker_client=None) -> int:
    """Remove every container, volume and network labelled with ``installation_id`` (a test
    session's, say), the firewall chains of its allow-lists, and unmount its workspaces' disks; returns how many were removed. Never touches
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
    for network in client.networks.list(filters={"label": label}):
        network.remove()
        workspace_id = (network.attrs.get("Labels") or {}).get(LABEL_WORKSPACE)
        if workspace_id:  # a workspace's own network (allow-list): its firewall chain too
            firewall.remove(*firewall.egress_names(installation_id, workspace_id))
        removed += 1
    return removed + release_installation_disks(installation_id)
