"""Sandbox fixtures: settings with a per-session installation id, and cleanup of everything
this session created in Docker (containers and volumes carry that id in their labels)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quadracode_ray.config import Settings

SESSION_INSTALLATION = f"t{uuid.uuid4().hex[:10]}"
OUTPUT_LIMIT = 65536
DISK_QUOTA_MB = 512


@pytest.fixture(scope="session")
def sandbox_data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="qr-sbx-"))
    yield root
    from sandbox.deployments.disk import release_installation_disks

    release_installation_disks(SESSION_INSTALLATION)  # first: never delete through a mounted disk
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox_settings(sandbox_data_dir: Path, docker_client) -> Callable[..., Settings]:
    """Settings for sandbox tests: this session's installation id, small limits, no idle stop."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = dict(
            data_dir=sandbox_data_dir, sandbox_installation_id=SESSION_INSTALLATION,
            sandbox_memory_mb=256, sandbox_cpus=1.0, sandbox_pids_limit=128,
            sandbox_output_limit_bytes=OUTPUT_LIMIT, sandbox_kill_grace_s=0.5, sandbox_idle_stop_s=0,
            sandbox_disk_quota_mb=DISK_QUOTA_MB,
        )
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture(scope="session", autouse=True)
def _cleanup_sandbox_docker() -> Iterator[None]:
    # Set up first, so torn down last: after Ray has shut down (and the actors with it).
    yield
    from docker.errors import DockerException

    from sandbox.testing import remove_installation

    try:
        remove_installation(SESSION_INSTALLATION)
    except DockerException:
        pass
