"""Checks of what the system needs besides itself: the Docker engine and the workspace image."""

from __future__ import annotations

from dataclasses import dataclass

from quadracode_ray.config import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def docker_check(settings: Settings) -> Check:
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.DockerClient(base_url=settings.docker_host) if settings.docker_host else docker.from_env()
        client.ping()
    except DockerException as exc:
        return Check("docker", False, f"no Docker engine answers ({exc}); run scripts/provision-docker.sh")
    try:
        image = client.images.get(settings.workspace_image)
    except ImageNotFound:
        return Check("docker", False, f"image {settings.workspace_image} is missing; run scripts/provision-docker.sh")
    finally:
        client.close()
    return Check("docker", True, f"engine answers, image {settings.workspace_image} ({image.short_id})")
