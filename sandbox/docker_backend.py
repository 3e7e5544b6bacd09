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
import socket
import stat
import time
from datetime import datetime
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceConflict, WorkspaceUnavailable
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


def docker_client(settings: Settings) -> docker.DockerClient:
    try:
        if settings.docker_host:
            return docker.DockerClient(base_url=settings.docker_host)
        return docker.from_env()
    except DockerException as exc:
        raise WorkspaceUnavailable(f"no Docker engine answers ({exc}); run scripts/provision-docker.sh") from None


def _spec_key(spec: WorkspaceSpec, settings: Settings) -> WorkspaceLimits:
    return WorkspaceLimits(
        memory_mb=spec.memory_mb or settings.sandbox_memory_mb,
        cpus=spec.cpus or settings.sandbox_cpus,
        pids_limit=spec.pids_limit or settings.sandbox_pids_limit,
        network=spec.network,
    )


class DockerDeployment:
    def __init__(self, workspace_id: str, settings: Settings, client: docker.DockerClient | None = None):
        self.workspace_id = validate_workspace_id(workspace_id)
        self.settings = settings
        self.installation = settings.sandbox_installation_id
        self._client = client
        self.container_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.volume_name = f"qr-{self.installation}-ws-{workspace_id}"
        self.shared_volume_name = f"qr-{self.installation}-shared"
        self.run_dir = settings.data_dir / "sandbox" / self.installation / workspace_id / "run"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:  # lazily: an actor must construct even while Docker is down
            self._client = docker_client(self.settings)
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
                wanted = _spec_key(spec, self.settings)
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
        limits = _spec_key(spec, self.settings)
        try:
            self.client.images.get(self.settings.workspace_image)
        except ImageNotFound:
            raise WorkspaceUnavailable(
                f"image {self.settings.workspace_image} is missing; run scripts/provision-docker.sh"
            ) from None
        self._volume(self.volume_name, "workspace-volume")
        self._volume(self.shared_volume_name, "shared")
        self._prepare_run_dir()
        labels = self._labels("workspace") | {LABEL_SPEC: limits.model_dump_json()}
        try:
            container = self.client.containers.create(
                self.settings.workspace_image,
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
        elif self._server_listening():
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
        before = self._socket_inode()
        # Re-copied every launch: an upgraded sandbox package brings its container server with it.
        container.put_archive(IN_CONTAINER_DIR, server_archive())
        container.exec_run(
            ["python3", "-u", f"{IN_CONTAINER_DIR}/container_server/server.py", "--socket", f"{RUN_DIR}/{SOCKET_NAME}"],
            user=f"{SANDBOX_UID}:{SANDBOX_UID}", detach=True, workdir="/workspace",
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            inode = self._socket_inode()
            if inode is not None and inode != before:
                return
            time.sleep(0.01)
        raise WorkspaceUnavailable(f"the container server of workspace {self.workspace_id!r} did not start within {SERVER_START_TIMEOUT:.0f} s")

    def _server_listening(self) -> bool:
        try:
            fd = os.open(self.socket_path, os.O_PATH | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2.0)
                probe.connect(f"/proc/self/fd/{fd}")
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def _socket_inode(self) -> int | None:
        try:
            st = os.lstat(self.socket_path)
        except OSError:
            return None
        return st.st_ino if stat.S_ISSOCK(st.st_mode) else None

    # --- inspection ----------------------------------------------------------------------------------
    def info(self) -> WorkspaceInfo:
        container = self._find()
        base = dict(workspace_id=self.workspace_id, installation_id=self.installation,
                    container_name=self.container_name, volume_name=self.volume_name,
                    image=self.settings.workspace_image)
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
