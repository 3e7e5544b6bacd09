"""Network allow-lists against the real Docker engine and the host's firewall: two servers the
test starts on a Docker network it creates, one allowed and one not. The workspace reaches the
allowed host name and port, and nothing else: not the other port, not the other server (by
address), not the host's own services; only the listed name resolves. The workspace cannot
change the rules; destroying it removes them. No test sends anything to an address it did not
create (the workspace's DNS server is its own network's gateway, refused by the firewall)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from sandbox.deployments import firewall
from sandbox.deployments.docker import LABEL_INSTALLATION, DockerDeployment, DockerDeploymentConfig
from sandbox.models import EgressRule, WorkspaceSpec
from sandbox.service import WorkspaceService
from tests.conftest import WORKSPACE_IMAGE
from tests.polling import eventually, eventually_sync
from tests.sandbox.conftest import SESSION_INSTALLATION

# Listens on TCP 8000 and 8001 and UDP 8000; logs every connection and datagram with its source.
SERVER = """
import socket, sys, threading
name = sys.argv[1]
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, a = s.accept(); print(f"tcp {port} from {a[0]}", flush=True); c.sendall(f"hello from {name} {port}\\n".encode()); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(100); print(f"udp {port} from {a[0]}: {d.decode()}", flush=True)
for target, port in ((tcp, 8000), (tcp, 8001), (udp, 8000)):
    threading.Thread(target=target, args=(port,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
CONNECT = ("python3 -c \"import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); "
           "print(s.recv(100).decode().strip())\" {host} {port}")
UDP = "python3 -c \"import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))\" {host} {port} {text}"
NET_ADMIN, NET_RAW = 12, 13


@pytest.fixture(scope="module")
def servers(docker_client):
    """Two servers on a network this test creates: {"allowed": ip, "refused": ip} and their containers."""
    tag = uuid.uuid4().hex[:6]
    labels = {LABEL_INSTALLATION: SESSION_INSTALLATION}
    network = docker_client.networks.create(f"qr-{SESSION_INSTALLATION}-servers-{tag}", driver="bridge", labels=labels)
    containers = {}
    try:
        for name in ("allowed", "refused"):
            containers[name] = docker_client.containers.run(
                WORKSPACE_IMAGE, ["python3", "-u", "-c", SERVER, name], name=f"qr-{SESSION_INSTALLATION}-{name}-{tag}",
                labels=labels, network=network.name, cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
                detach=True)
        for container in containers.values():
            eventually_sync(lambda c=container: b"ready" in c.logs(), timeout=60, what="the test server ready")
            container.reload()
        addresses = {name: c.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
                     for name, c in containers.items()}
        yield addresses, containers
    finally:
        for container in containers.values():
            container.remove(force=True)
        network.remove()


@pytest.fixture(scope="module")
async def workspace(sandbox_settings, servers):
    addresses, _ = servers
    settings = sandbox_settings(sandbox_network_hosts={"allowed.test": addresses["allowed"],
                                                       "refused.test": addresses["refused"]})
    service = WorkspaceService(DockerDeployment("egress", DockerDeploymentConfig.from_settings(settings)), settings)
    await service.ensure(WorkspaceSpec(network=["allowed.test:8000"]))
    yield service
    await service.destroy(remove_volume=True)
    service.close()


async def test_the_allow_list_is_in_the_workspace_info(workspace, servers):
    addresses, _ = servers
    info = await workspace.info()
    assert info.limits.network == ["allowed.test:8000"]
    assert info.egress == [EgressRule(entry="allowed.test:8000", addresses=[f"{addresses['allowed']}/32"],
                                      ports=(8000, 8000))]


async def test_only_the_allowed_host_and_port_are_reached(workspace, servers):
    addresses, containers = servers
    allowed = await workspace.exec(CONNECT.format(host="allowed.test", port=8000), timeout=30)
    assert allowed.exit_code == 0 and allowed.stdout == "hello from allowed 8000\n", allowed
    for host, port in ((addresses["allowed"], 8001), (addresses["refused"], 8000), ("refused.test", 8000)):
        started = time.monotonic()
        refused = await workspace.exec(CONNECT.format(host=host, port=port), timeout=30)
        assert refused.exit_code != 0, (host, port, refused)
        # Refused at once (a TCP reset), or the name not found: never a hang to the 5 s timeout.
        assert "ConnectionRefusedError" in refused.stderr or "gaierror" in refused.stderr, refused.stderr
        assert time.monotonic() - started < 5, (host, port)
    # UDP too: the datagram to the refused server is sent first; once the allowed one has
    # arrived, the refused one would have too.
    await workspace.exec(UDP.format(host=addresses["refused"], port=8000, text="to-refused") + "; "
                         + UDP.format(host="allowed.test", port=8000, text="to-allowed"))
    await eventually(lambda: asyncio.to_thread(lambda: b"to-allowed" in containers["allowed"].logs()),
                     timeout=10, what="the allowed datagram")
    assert containers["refused"].logs().decode().split() == ["ready"]  # not one connection, not one datagram


async def test_only_the_listed_names_resolve(workspace, servers):
    addresses, _ = servers
    found = await workspace.exec("getent hosts allowed.test")
    assert found.exit_code == 0 and found.stdout.split()[0] == addresses["allowed"]
    started = time.monotonic()
    for name in ("refused.test", "example.com"):
        missing = await workspace.exec(f"getent hosts {name}", timeout=30)
        assert missing.exit_code == 2 and missing.stdout == "", (name, missing)  # 2: not found
    assert time.monotonic() - started < 30


async def test_the_host_itself_is_refused(workspace, docker_client):
    # A listener the test starts on the host, at the workspace network's gateway address.
    network = docker_client.networks.get(workspace.deployment.network_name)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    listener = socket.socket()
    listener.bind((gateway, 0))
    listener.listen()
    listener.setblocking(False)
    try:
        result = await workspace.exec(CONNECT.format(host=gateway, port=listener.getsockname()[1]), timeout=30)
        assert result.exit_code != 0 and "ConnectionRefusedError" in result.stderr, result
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing arrived
    finally:
        listener.close()


async def test_the_workspace_cannot_change_the_rules(workspace, docker_client):
    container = docker_client.containers.get(workspace.deployment.container_name)
    host_config = container.attrs["HostConfig"]
    assert not {"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "ALL"} & set(host_config["CapAdd"] or [])
    assert host_config["Privileged"] is False and "no-new-privileges:true" in host_config["SecurityOpt"]
    caps = await workspace.exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status /proc/1/status")
    for line in caps.stdout.splitlines():
        value = int(line.split()[-1], 16)
        assert not value & (1 << NET_ADMIN | 1 << NET_RAW), line  # not the commands, not root in the container
    raw = await workspace.exec("python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)'")
    assert raw.exit_code != 0 and "PermissionError" in raw.stderr
    # The rules live in the host's network namespace, entered by the workspace's own bridge.
    assert firewall.chain_exists(workspace.deployment.chain)


async def test_a_bad_allow_list_is_refused_with_a_clear_error():
    for entry, message in (("allowed.test:99999", "1-65535"), ("bad host", "not a host name"),
                           ("::1", "IPv6"), ("0.0.0.0/0", "every address")):
        with pytest.raises(ValueError, match=message):
            WorkspaceSpec(network=[entry])
    with pytest.raises(ValueError, match="empty"):
        WorkspaceSpec(network=[])


async def test_destroying_the_workspace_removes_its_rules_and_network(sandbox_settings, servers, docker_client):
    addresses, _ = servers
    settings = sandbox_settings(sandbox_network_hosts={"allowed.test": addresses["allowed"]})
    service = WorkspaceService(DockerDeployment("egress-gone", DockerDeploymentConfig.from_settings(settings)), settings)
    await service.ensure(WorkspaceSpec(network=[f"{addresses['allowed']}:8000-8001"]))
    deployment = service.deployment
    assert firewall.chain_exists(deployment.chain)
    reached = await service.exec(CONNECT.format(host=addresses["allowed"], port=8001), timeout=30)
    assert reached.stdout == "hello from allowed 8001\n", reached  # the range's last port
    await service.destroy(remove_volume=True)
    service.close()
    assert not firewall.chain_exists(deployment.chain)
    assert not docker_client.networks.list(names=[deployment.network_name])
