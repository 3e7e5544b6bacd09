"""Attacks from inside a workspace, each contained, with the host and the workspace's container server
left working: fork bomb, memory bomb, output flood, network egress, privilege and writes
outside /workspace and /shared, tampering with the container server, swapping its socket."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import pytest

from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.client import get_workspace
from sandbox.deployments.docker import LABEL_INSTALLATION, LABEL_WORKSPACE, SERVER_CAPS
from sandbox.runtime import open_socket
from tests.sandbox.conftest import OUTPUT_LIMIT

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
async def ws(ray_cluster, sandbox_settings):
    client = await get_workspace("attacks", sandbox_settings())
    yield client
    await client.destroy(remove_volume=True)


@pytest.fixture(scope="module")
def container(ws, docker_client, sandbox_settings):
    settings = sandbox_settings()
    return docker_client.containers.list(filters={"label": [
        f"{LABEL_WORKSPACE}=attacks", f"{LABEL_INSTALLATION}={settings.sandbox_installation_id}"]})[0]


async def _still_healthy(ws) -> None:
    result = await ws.exec("echo healthy", timeout=30)
    assert result.stdout == "healthy\n"


def test_container_is_hardened(container):
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False
    # Only the container server (root in the container) holds these; no process of user 1000 can.
    assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(SERVER_CAPS)
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == 256 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] == 128 and host["NanoCpus"] == 1_000_000_000
    assert container.attrs["Config"]["User"] == "0:0"  # init only: commands run as 1000 (test_hostile)
    sources = [m.get("Source", "") for m in container.attrs["Mounts"]]
    assert not any("docker.sock" in s for s in sources)
    assert sorted(m["Destination"] for m in container.attrs["Mounts"]) == ["/run/quadracode", "/shared", "/workspace"]


async def test_no_privileges_inside(ws):
    status = (await ws.exec("grep -E '^(CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status")).stdout
    assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status
    assert (await ws.exec("test -e /var/run/docker.sock || test -e /run/docker.sock")).exit_code == 1
    assert (await ws.exec("mount -t tmpfs none /mnt")).exit_code != 0


async def test_fork_bomb_is_contained_by_the_pids_limit(ws):
    result = await ws.exec(":(){ :|:& };:", timeout=3)
    # The bomb hit the pids limit (forks refused) and everything it spawned died with the exec.
    assert result.timed_out or "Resource temporarily unavailable" in result.stderr
    left = await ws.exec("ps -e --no-headers | wc -l")
    assert int(left.stdout) < 20  # the bomb's whole tree was killed at the timeout
    await _still_healthy(ws)


async def test_memory_bomb_is_killed_by_the_memory_limit(ws):
    result = await ws.exec("python3 -c 'x = bytearray(1 << 30); print(len(x))'", timeout=60)
    assert result.exit_code == 137 and result.stdout == ""  # SIGKILLed by the OOM killer
    await _still_healthy(ws)


async def test_output_flood_is_capped(ws):
    result = await ws.exec("yes flood", timeout=2)
    assert result.timed_out and result.truncated
    assert len(result.stdout.encode()) == OUTPUT_LIMIT
    streamed = [item async for item in ws.exec_stream("head -c 10000000 /dev/urandom | base64", timeout=30)]
    assert streamed[-1].truncated and streamed[-1].exit_code == 0
    assert sum(len(i.data.encode()) for i in streamed[:-1]) <= OUTPUT_LIMIT
    await _still_healthy(ws)


async def test_network_egress_is_impossible_with_network_off(ws):
    assert (await ws.exec("ls /sys/class/net")).stdout.split() == ["lo"]
    probe = ("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\"")
    result = await ws.exec(probe, timeout=20)
    assert result.exit_code != 0 and "unreachable" in result.stderr.lower()


async def test_network_is_opt_in_per_workspace(sandbox_settings):
    from sandbox.models import WorkspaceSpec

    client = await get_workspace("with-net", sandbox_settings(), spec=WorkspaceSpec(network=True))
    try:
        assert "eth0" in (await client.exec("ls /sys/class/net")).stdout.split()
        assert (await client.info()).limits.network is True
    finally:
        await client.destroy(remove_volume=True)


async def test_writes_outside_workspace_and_shared_fail_and_host_is_untouched(ws):
    canary = Path(f"/tmp/qr-host-canary-{uuid.uuid4().hex}")
    for target in ("/etc/evil", "/usr/bin/evil", "/evil", "/opt/quadracode/container_server/server.py", "/var/evil"):
        result = await ws.exec(f"echo pwned > {target}")
        assert result.exit_code != 0 and "Permission denied" in result.stderr, target
    await ws.exec(f"echo inside > {canary}")  # the container's own /tmp, not the host's
    assert not canary.exists()
    assert (await ws.exec("echo 1 > /proc/sys/kernel/sysrq")).exit_code != 0
    assert (await ws.exec("echo ok > /workspace/fine && echo ok > /shared/fine-attacks")).exit_code == 0
    await _still_healthy(ws)


async def test_sigterm_ignoring_background_job_is_killed(ws):
    job = await ws.start_process("trap '' TERM INT HUP; exec -a qr-stubborn sleep 300")
    killed = await ws.kill_process(job.process_id)
    assert killed.status == "killed"
    assert (await ws.exec("ps -eo args | grep -c '^qr-stubborn' || true")).stdout.strip() == "0"


async def test_swapped_server_socket_is_not_followed(tmp_path):
    # A command in the container can replace exec.sock (its folder is writable from inside) with a
    # symlink to a host socket; the host side must refuse it rather than connect.
    real = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    real.bind(str(tmp_path / "host.sock"))
    real.listen(1)
    os.symlink(tmp_path / "host.sock", tmp_path / "exec.sock")
    with pytest.raises(WorkspaceUnavailable, match="not a socket"):
        await open_socket(tmp_path / "exec.sock")
    real.close()


async def test_concurrent_execs_do_not_mix_output(ws):
    results = await asyncio.gather(*(ws.exec(f"echo {i}; sleep 0.2; echo {i}") for i in range(12)))
    assert [r.stdout for r in results] == [f"{i}\n{i}\n" for i in range(12)]
