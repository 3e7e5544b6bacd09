"""Sandbox fixtures: settings with a per-session installation id, and cleanup of everything
this session created in Docker (containers and volumes carry that id in their labels)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quadracode_ray.config import Settings

SESSION_INSTALLATION = f"t{uuid.uuid4().hex[:10]}"
OUTPUT_LIMIT = 65536


@pytest.fixture(scope="session")
def sandbox_data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="qr-sbx-"))
    yield root


@pytest.fixture(scope="session")
def sandbox_settings(sandbox_data_dir: Path, docker_client) -> Callable[..., Settings]:
    """Settings for sandbox tests: this session's installation id, small limits, no idle stop."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = dict(
            data_dir=sandbox_data_dir, sandbox_installation_id=SESSION_INSTALLATION,
            sandbox_memory_mb=256, sandbox_cpus=1.0, sandbox_pids_limit=128,
            sandbox_output_limit_bytes=OUTPUT_LIMIT, sandbox_kill_grace_s=0.5, sandbox_idle_stop_s=0,
        )
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture(scope="session", autouse=True)
def _cleanup_sandbox_docker() -> Iterator[None]:
    # Set up first, so torn down last: after Ray has shut down (and the actors with it).
    yield
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
    except DockerException:
        return
    label = f"io.quadracode.installation={SESSION_INSTALLATION}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    client.close()
