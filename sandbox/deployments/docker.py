"""The Docker deployment: one hardened container per workspace, found again by its labels.

Hardening is not optional: no network unless the workspace's spec asks (and then Docker's
default bridge, never the infrastructure network), every capability dropped,
no-new-privileges, user 1000, memory (swap included), CPU and pids limits, never privileged,
no Docker socket. Mounts: the workspace's own volume at /workspace, the installation's one
shared volume at /shared, and a host folder at /run/quadracode where the container server listens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceConflict, WorkspaceUnavailable
from sandbox.deployments.base import server_listening, socket_inode, wait_for_new_socket
from sandbox.models import WorkspaceInfo, WorkspaceLimits, WorkspaceSpec, validate_workspace_id
from sandbox.server_bundle import server_archive

log = logging.getLogger(__name__)

LABEL_WORKSPACE = "io.quadracode.workspace"
LABEL_INSTALLATION = "io.quadracode.installation"
LABEL_ROLE = "io.quadracode.role"
LABEL_SPEC = "io.quadracode.spec"
IN_CONTAINER_DIR = "/opt/quadracode"
RUN_DIR = "/run/quadracode"
SOCKET_NAME = "exec.sock"
SANDBOX_UID = 1000
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

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerDeploymentConfig:
        """The one place the installation's settings become a Docker deployment's config."""
        return cls(
            installation_id=settings.sandbox_installation_id, image=settings.workspace_image,
            docker_host=settings.docker_host,
            run_root=settings.data_dir / "sandbox" / settings.sandbox_installation_id,
            memory_mb=settings.sandbox_memory_mb, cpus=settings.sandbox_cpus, pids_limit=settings.sandbox_pids_limit,
        )

    def limits(self, spec: WorkspaceSpec) -> WorkspaceLimits:
        """The limits a workspace gets: its spec's, else the installation's defaults."""
        return WorkspaceLimits(
            memory_mb=spec.memory_mb or self.memory_mb,
            cpus=spec.cpus or self.cpus,
            pids_limit=spec.pids_limit or self.pids_limit,
            network=spec.network,
        )


def docker_client(docker_host: str | None) -> docker.DockerClient:
    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host)
        return docker.from_env()
    except DockerException as exc:
        raise WorkspaceUnavailable(f"no Docker engine answers ({exc}); run scripts/provision-docker.sh") from None


class DockerDeployment:
    def __init__(self, workspace_id: str, config: DockerDeploymentConfig, client: docker.DockerClient | None = None):
        self.workspace_id = validate_workspace_id(workspace_id)
        self.config = config
        self.installation = config.installation_id
        self._client = client
        self.container_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.volume_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.shared_volume_name = f"qr-{self.installation}-shared"
        self.run_dir = config.run_root / workspace_id / "run"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:  # lazily: an actor must construct even while Docker is down
            self._client = docker_client(self.config.docker_host)
        return self._client

    # --- naming and lookup ---------------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        return self.run_dir / SOCKET_NAME

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

    def exists(self) -> bool:
        return self._find() is not None

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
        if os.geteuid() == 0:
            os.chown(self.run_dir, SANDBOX_UID, SANDBOX_UID)
            os.chmod(self.run_dir, 0o700)
        elif os.geteuid() != SANDBOX_UID:
            os.chmod(self.run_dir, 0o777)  # the data folder above keeps other host users out

    # --- lifecycle --------------------------------------------------------------------------------
    def ensure(self, spec: WorkspaceSpec | None) -> WorkspaceInfo:
        container = self._find()
        if container is not None:
            if spec is not None:
                wanted = self.config.limits(spec)
                have = WorkspaceLimits.model_validate_json(container.labels.get(LABEL_SPEC, "{}"))
                if wanted != have:
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
        self._volume(self.volume_name, "workspace-volume")
        self._volume(self.shared_volume_name, "shared")
        self._prepare_run_dir()
        labels = self._labels("workspace") | {LABEL_SPEC: limits.model_dump_json()}
        try:
            container = self.client.containers.create(
                self.config.image,
                name=self.container_name,
                hostname=f"ws-{self.workspace_id}"[:63].rstrip(".-_") or "ws",
                labels=labels,
                user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                working_dir="/workspace",
                network_mode="bridge" if limits.network else "none",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                privileged=False,
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids_limit,
                volumes={
                    self.volume_name: {"bind": "/workspace", "mode": "rw"},
                    self.shared_volume_name: {"bind": "/shared", "mode": "rw"},
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

    def _start(self, container) -> None:
        container.reload()
        if container.status != "running":
            try:
                container.start()
            except APIError as exc:
                raise WorkspaceUnavailable(f"could not start workspace {self.workspace_id!r}: {exc.explanation or exc}") from None
        elif server_listening(self.socket_path):
            return  # re-attaching: keep the running container server and the background jobs it owns
        self.launch_server(container)

    def start(self) -> None:
        container = self._find()
        if container is None:
            raise WorkspaceUnavailable(f"workspace {self.workspace_id!r} has no container; create it first")
        self._start(container)

    def is_running(self) -> bool:
        container = self._find()
        return container is not None and container.status == "running"

    def stop(self) -> None:
        container = self._find()
        if container is not None and container.status == "running":
            container.stop(timeout=5)

    def destroy(self, remove_volume: bool) -> None:
        container = self._find()
        if container is not None:
            try:
                container.remove(force=True)
            except NotFound:
                pass
        if remove_volume:
            try:
                self.client.volumes.get(self.volume_name).remove(force=True)
            except NotFound:
                pass
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def launch_server(self, container=None) -> None:
        container = container or self._find()
        if container is None:
            raise WorkspaceUnavailable(f"workspace {self.workspace_id!r} has no container")
        self._prepare_run_dir()
        before = socket_inode(self.socket_path)
        # Re-copied every launch: an upgraded sandbox package brings its container server with it.
        container.put_archive(IN_CONTAINER_DIR, server_archive())
        container.exec_run(
            ["python3", "-u", f"{IN_CONTAINER_DIR}/container_server/server.py", "--socket", f"{RUN_DIR}/{SOCKET_NAME}"],
            user=f"{SANDBOX_UID}:{SANDBOX_UID}", detach=True, workdir="/workspace",
        )
        if wait_for_new_socket(self.socket_path, before, SERVER_START_TIMEOUT):
            return
        raise WorkspaceUnavailable(f"the container server of workspace {self.workspace_id!r} did not start within {SERVER_START_TIMEOUT:.0f} s")

    # --- inspection ----------------------------------------------------------------------------------
    def info(self) -> WorkspaceInfo:
        container = self._find()
        base = dict(workspace_id=self.workspace_id, installation_id=self.installation,
                    container_name=self.container_name, volume_name=self.volume_name,
                    image=self.config.image)
        if container is None:
            return WorkspaceInfo(status="missing", **base)
        raw = container.labels.get(LABEL_SPEC)
        limits = WorkspaceLimits.model_validate(json.loads(raw)) if raw else None
        created = container.attrs.get("Created")
        return WorkspaceInfo(
            status="running" if container.status == "running" else "stopped",
            container_id=container.id, limits=limits,
            created_at=datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00") if created else None,
            **base,
        )
