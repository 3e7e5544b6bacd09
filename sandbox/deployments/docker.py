"""The Docker deployment: one hardened container per workspace, found again by its labels.

Hardening is not optional: no network unless the workspace's spec asks (then Docker's default
bridge, never the infrastructure network; or a network of its own behind an allow-list enforced
by the host's firewall, see firewall.py), no-new-privileges, every command as user
1000 with no capability, memory (swap included), CPU and pids limits, never privileged, no
Docker socket. Mounts: the workspace's own volume at /workspace, the installation's one shared
volume at /shared, and a root-owned host folder at /run/quadracode where the container server
listens.

The container server runs as root inside the container with the few capabilities it needs
(SERVER_CAPS: run commands as user 1000, kill them, act on their files) and nothing else; user
1000 cannot signal, trace, read or replace it (no-new-privileges: no process of that user ever
gains a capability). Each start gets a new secret, passed in the server's environment and kept
on the host outside the container's mounts; the host connects only to a peer running as root
that proves it knows the secret.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
from datetime import datetime
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.network_allow import NetworkAccess
from quadracode_ray.interfaces.workspace import WorkspaceConflict, WorkspaceUnavailable
from sandbox.deployments import firewall
from sandbox.deployments.base import (
    SECRET_ENV,
    SOCKET_NAME,
    RunFolder,
    server_listening,
    socket_inode,
    wait_for_new_socket,
)
from sandbox.deployments.disk import QuotaDisk
from sandbox.models import (
    EgressRule,
    WorkspaceInfo,
    WorkspaceLimits,
    WorkspaceSpec,
    validate_workspace_id,
)
from sandbox.server_bundle import server_archive

log = logging.getLogger(__name__)

LABEL_WORKSPACE = "io.quadracode.workspace"
LABEL_INSTALLATION = "io.quadracode.installation"
LABEL_ROLE = "io.quadracode.role"
LABEL_SPEC = "io.quadracode.spec"
LABEL_EGRESS = "io.quadracode.egress"
IN_CONTAINER_DIR = "/opt/quadracode"
RUN_DIR = "/run/quadracode"
SANDBOX_UID = 1000
SERVER_UID = 0
"""The container server's uid, inside the container and as the host sees it (no user namespace)."""
SERVER_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"]
SERVER_START_TIMEOUT = 15.0


class DockerDeploymentConfig(BaseModel):
    """Everything the Docker deployment needs to know, and nothing else of the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    installation_id: str
    """Labels and names this installation's containers and volumes."""
    image: str
    docker_host: str | None = None
    """The engine's URL; None: the environment's (DOCKER_HOST or the local socket)."""
    run_root: Path
    """Host folder holding one socket folder per workspace (``<run_root>/<id>/run``)."""
    memory_mb: int = Field(ge=64)
    cpus: float = Field(gt=0)
    pids_limit: int = Field(ge=16)
    cpu_shares: int = Field(default=256, ge=2)
    """CPU weight under contention (the host's own processes have 1024)."""
    disk_quota_mb: int = Field(default=0, ge=0)
    """Size of each workspace's own file system (see disk.py); 0: a plain volume, no quota."""
    network: NetworkAccess = False
    """Network access of a workspace whose spec does not say (see WorkspaceSpec.network)."""
    network_hosts: dict[str, str] = Field(default_factory=dict)
    """Names allow-lists may use beyond the host's resolver (name to IPv4 address)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerDeploymentConfig:
        """The one place the installation's settings become a Docker deployment's config."""
        return cls(
            installation_id=settings.sandbox_installation_id, image=settings.workspace_image,
            docker_host=settings.docker_host,
            run_root=settings.data_dir / "sandbox" / settings.sandbox_installation_id,
            memory_mb=settings.sandbox_memory_mb, cpus=settings.sandbox_cpus, pids_limit=settings.sandbox_pids_limit,
            cpu_shares=settings.sandbox_cpu_shares, disk_quota_mb=settings.sandbox_disk_quota_mb,
            network=settings.sandbox_network, network_hosts=settings.sandbox_network_hosts,
        )

    def limits(self, spec: WorkspaceSpec) -> WorkspaceLimits:
        """The limits a workspace gets: its spec's, else the installation's defaults."""
        return WorkspaceLimits(
            memory_mb=spec.memory_mb or self.memory_mb,
            cpus=spec.cpus or self.cpus,
            pids_limit=spec.pids_limit or self.pids_limit,
            network=self.network if spec.network is None else spec.network,
            disk_mb=self.disk_quota_mb,
        )


def docker_client(docker_host: str | None) -> docker.DockerClient:
    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host)
        return docker.from_env()
    except DockerException as exc:
        raise WorkspaceUnavailable(f"no Docker engine answers ({exc}); run scripts/provision-docker.sh") from None


def engine_errors(method):
    """Failures of the Docker engine as WorkspaceUnavailable. While the engine is down or restarting its
    socket is gone, and docker-py raises requests' ConnectionError (an OSError, not a DockerException):
    callers (an agent's tool, the operator API) must get the typed, retryable error instead."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (DockerException, requests.exceptions.RequestException) as exc:
            raise WorkspaceUnavailable(f"workspace {self.workspace_id!r}: the Docker engine is unavailable "
                                       f"({type(exc).__name__}: {str(exc)[:300]})") from None
    return call


class DockerDeployment(RunFolder):
    def __init__(self, workspace_id: str, config: DockerDeploymentConfig, client: docker.DockerClient | None = None):
        self.workspace_id = validate_workspace_id(workspace_id)
        self.config = config
        self.installation = config.installation_id
        self._client = client
        self.container_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.volume_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.shared_volume_name = f"qr-{self.installation}-shared"
        self.run_dir = config.run_root / workspace_id / "run"
        self.network_name = f"qr-{self.installation}-ws-{workspace_id}-net"
        self.bridge, self.chain = firewall.egress_names(self.installation, workspace_id)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:  # lazily: an actor must construct even while Docker is down
            self._client = docker_client(self.config.docker_host)
        return self._client

    # --- naming and lookup ---------------------------------------------------------------------
    @property
    def server_uid(self) -> int:
        return SERVER_UID

    def _labels(self, role: str) -> dict[str, str]:
        labels = {LABEL_INSTALLATION: self.installation, LABEL_ROLE: role}
        if role != "shared":
            labels[LABEL_WORKSPACE] = self.workspace_id
        return labels

    def _find(self):
        filters = {"label": [f"{LABEL_WORKSPACE}={self.workspace_id}", f"{LABEL_INSTALLATION}={self.installation}"]}
        try:
            found = self.client.containers.list(all=True, filters=filters)
        except DockerException as exc:
            raise WorkspaceUnavailable(f"Docker engine error while looking up workspace {self.workspace_id!r}: {exc}") from None
        if not found:
            return None
        # Re-attaching: the container server listens in the folder the container was created with,
        # which may differ from ours (another data_dir, another process).
        for mount in found[0].attrs.get("Mounts", []):
            if mount.get("Destination") == RUN_DIR and mount.get("Source"):
                self.run_dir = Path(mount["Source"])
        return found[0]

    @engine_errors
    def exists(self) -> bool:
        return self._find() is not None

    @property
    def disk(self) -> QuotaDisk:
        """This workspace's own file system (beside its run folder, found again on re-attach)."""
        return QuotaDisk(self.run_dir.parent, self.config.disk_quota_mb)

    @property
    def shared_disk(self) -> QuotaDisk:
        """The installation's /shared, bounded the same way (never a workspace id: those start alphanumeric)."""
        return QuotaDisk(self.run_dir.parent.parent / "_shared", self.config.disk_quota_mb)

    @staticmethod
    def _has_disk(container) -> bool:
        return any(m.get("Destination") == "/workspace" and str(m.get("Source", "")).endswith("/disk")
                   for m in container.attrs.get("Mounts", []))

    def _volume(self, name: str, role: str) -> None:
        try:
            self.client.volumes.get(name)
        except NotFound:
            try:
                self.client.volumes.create(name=name, labels=self._labels(role))
            except APIError as exc:
                if exc.status_code != 409:
                    raise

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Owned by the host's user, not writable by the sandbox user: the socket cannot be
        # replaced from inside (the server, root in the container, may still write here).
        os.chmod(self.run_dir, 0o755)
        if os.geteuid() == SANDBOX_UID:
            log.warning("the host runs as uid %d, the sandbox user's: workspaces could replace the server socket",
                        SANDBOX_UID)

    # --- lifecycle --------------------------------------------------------------------------------
    @engine_errors
    def ensure(self, spec: WorkspaceSpec | None) -> WorkspaceInfo:
        container = self._find()
        if container is not None:
            if spec is not None:
                # The quota is the installation's, fixed at creation: not part of a spec.
                wanted = self.config.limits(spec).model_copy(update={"disk_mb": 0})
                have = WorkspaceLimits.model_validate_json(container.labels.get(LABEL_SPEC, "{}"))
                if wanted != have.model_copy(update={"disk_mb": 0}):
                    raise WorkspaceConflict(
                        f"workspace {self.workspace_id!r} exists with {have.model_dump()}, not {wanted.model_dump()}; "
                        "destroy it first to change its limits or network"
                    )
        else:
            container = self._create(spec or WorkspaceSpec())
        self._start(container)
        return self.info()

    def _create(self, spec: WorkspaceSpec):
        limits = self.config.limits(spec)
        try:
            self.client.images.get(self.config.image)
        except ImageNotFound:
            raise WorkspaceUnavailable(
                f"image {self.config.image} is missing; run scripts/provision-docker.sh"
            ) from None
        if limits.disk_mb:
            self.disk.ensure_mounted()
            self.shared_disk.ensure_mounted()
            workspace_mount, shared_mount = str(self.disk.mountpoint), str(self.shared_disk.mountpoint)
        else:
            self._volume(self.volume_name, "workspace-volume")
            self._volume(self.shared_volume_name, "shared")
            workspace_mount, shared_mount = self.volume_name, self.shared_volume_name
        self._prepare_run_dir()
        labels = self._labels("workspace") | {LABEL_SPEC: limits.model_dump_json()}
        network: dict = {"network_mode": "bridge" if limits.network is True else "none"}
        if isinstance(limits.network, list):
            rules = firewall.resolve(limits.network, self.config.network_hosts)
            labels[LABEL_EGRESS] = json.dumps([rule.model_dump(mode="json") for rule in rules])
            # Its DNS server is its own gateway, which the firewall refuses: only /etc/hosts answers,
            # and an unlisted name fails after a second (no server answers), not glibc's 10 s.
            network = {"network_mode": self.network_name, "dns": [self._egress_network(rules)],
                       "dns_opt": ["timeout:1", "attempts:1"], "extra_hosts": firewall.hosts_entries(rules)}
        try:
            container = self.client.containers.create(
                self.config.image,
                name=self.container_name,
                hostname=f"ws-{self.workspace_id}"[:63].rstrip(".-_") or "ws",
                labels=labels,
                # init and its sleep run as root, so that user 1000 cannot stop the container by
                # killing them; every command runs as user 1000 (the server switches to it).
                user="0:0",
                working_dir="/workspace",
                **network,
                cap_drop=["ALL"],
                cap_add=SERVER_CAPS,
                security_opt=["no-new-privileges:true"],
                privileged=False,
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids_limit,
                cpu_shares=self.config.cpu_shares,
                volumes={
                    workspace_mount: {"bind": "/workspace", "mode": "rw"},
                    shared_mount: {"bind": "/shared", "mode": "rw"},
                    str(self.run_dir): {"bind": RUN_DIR, "mode": "rw"},
                },
                detach=True,
            )
        except APIError as exc:
            if exc.status_code == 409:  # another creator won the race: use theirs
                found = self._find()
                if found is not None:
                    return found
            raise WorkspaceUnavailable(f"could not create workspace {self.workspace_id!r}: {exc.explanation or exc}") from None
        container.put_archive(IN_CONTAINER_DIR, server_archive())
        log.info("created workspace container %s", self.container_name)
        return container

    def _egress(self, container) -> list[EgressRule] | None:
        raw = container.labels.get(LABEL_EGRESS)
        return [EgressRule.model_validate(rule) for rule in json.loads(raw)] if raw else None

    def _egress_network(self, rules: list[EgressRule]) -> str:
        """Create the workspace's own network with its firewall (rules first); its gateway address."""
        firewall.apply(self.bridge, self.chain, rules)
        found = self.client.networks.list(names=[self.network_name])
        network = next((n for n in found if n.name == self.network_name), None) or self.client.networks.create(
            self.network_name, driver="bridge", labels=self._labels("network"),
            options={"com.docker.network.bridge.name": self.bridge})
        network.reload()
        return network.attrs["IPAM"]["Config"][0]["Gateway"]

    def _remove_egress_network(self) -> None:
        for network in self.client.networks.list(names=[self.network_name]):
            if network.name == self.network_name:
                try:
                    network.remove()
                except NotFound:
                    pass
                firewall.remove(self.bridge, self.chain)

    def _start(self, container) -> None:
        container.reload()
        egress = self._egress(container)
        if egress is not None and (container.status != "running" or not firewall.chain_exists(self.chain)):
            firewall.apply(self.bridge, self.chain, egress)  # before it runs: never without its rules
        if container.status != "running":
            if self._has_disk(container):
                self.disk.ensure_mounted()  # after a host reboot, before the bind mount needs it
                self.shared_disk.ensure_mounted()
            try:
                container.start()
            except APIError as exc:
                raise WorkspaceUnavailable(f"could not start workspace {self.workspace_id!r}: {exc.explanation or exc}") from None
        elif server_listening(self.socket_path):
            return  # re-attaching: keep the running container server and the background jobs it owns
        self.launch_server(container)

    @engine_errors
    def start(self) -> None:
        container = self._find()
        if container is None:
            raise WorkspaceUnavailable(f"workspace {self.workspace_id!r} has no container; create it first")
        self._start(container)

    @engine_errors
    def is_running(self) -> bool:
        container = self._find()
        return container is not None and container.status == "running"

    @engine_errors
    def stop(self) -> None:
        container = self._find()
        if container is not None and container.status == "running":
            container.stop(timeout=5)

    @engine_errors
    def destroy(self, remove_volume: bool) -> None:
        container = self._find()
        if container is not None:
            try:
                container.remove(force=True)
            except NotFound:
                pass
        self._remove_egress_network()
        self.disk.release(delete=remove_volume)
        if remove_volume:
            try:
                self.client.volumes.get(self.volume_name).remove(force=True)
            except NotFound:
                pass
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.secret_path.unlink(missing_ok=True)

    @engine_errors
    def launch_server(self, container=None) -> None:
        container = container or self._find()
        if container is None:
            raise WorkspaceUnavailable(f"workspace {self.workspace_id!r} has no container")
        self._prepare_run_dir()
        before = socket_inode(self.socket_path)
        # Re-copied every launch: an upgraded sandbox package brings its container server with it.
        container.put_archive(IN_CONTAINER_DIR, server_archive())
        secret = secrets.token_hex(32)
        tmp = self.secret_path.with_name(f".server.secret.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret)
        os.replace(tmp, self.secret_path)
        container.exec_run(
            ["python3", "-u", f"{IN_CONTAINER_DIR}/container_server/server.py", "--socket", f"{RUN_DIR}/{SOCKET_NAME}",
             "--run-as", f"{SANDBOX_UID}:{SANDBOX_UID}", "--socket-owner", str(os.geteuid())],
            user=f"{SERVER_UID}:{SERVER_UID}", detach=True, workdir="/workspace", environment={SECRET_ENV: secret},
        )
        if wait_for_new_socket(self.socket_path, before, SERVER_START_TIMEOUT):
            return
        raise WorkspaceUnavailable(f"the container server of workspace {self.workspace_id!r} did not start within {SERVER_START_TIMEOUT:.0f} s")

    # --- inspection ----------------------------------------------------------------------------------
    @engine_errors
    def info(self) -> WorkspaceInfo:
        container = self._find()
        base = dict(workspace_id=self.workspace_id, installation_id=self.installation,
                    container_name=self.container_name,
                    # With a disk quota, /workspace is the quota file system mounted on the host, not a volume.
                    volume_name=str(self.disk.mountpoint) if self.disk.mounted() else self.volume_name,
                    image=self.config.image)
        if container is None:
            return WorkspaceInfo(status="missing", **base)
        raw = container.labels.get(LABEL_SPEC)
        limits = WorkspaceLimits.model_validate(json.loads(raw)) if raw else None
        created = container.attrs.get("Created")
        usage = self.disk.usage() if self._has_disk(container) else None
        return WorkspaceInfo(
            egress=self._egress(container),
            status="running" if container.status == "running" else "stopped",
            container_id=container.id, limits=limits,
            disk_usage_bytes=usage[0] if usage else None, disk_quota_bytes=usage[1] if usage else None,
            created_at=datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00") if created else None,
            **base,
        )
