"""The local deployment: the container server run as a plain host subprocess over a folder.

For tests and notebooks on a machine without Docker, and as the protocol's second real
implementation. **It is NOT a security boundary.** Commands run as the host user who started
it, with that user's network, files and processes in view: a command can read, change or kill
anything that user can. Nothing of a ``WorkspaceSpec`` is applied (no network isolation, no
memory, CPU or pids limits). Only the file API confines its paths to the workspace and shared
folders, exactly as it does in a container. Never give it code or prompts you do not trust.

Layout under ``LocalDeploymentConfig.root``: ``shared/`` (shared by every workspace of that
root, like the installation's ``/shared`` volume) and ``<workspace id>/workspace`` and
``<workspace id>/run`` (socket, lock, server log) for each workspace. Absolute paths in the
file API are host paths here: ``<root>/<id>/workspace/...`` and ``<root>/shared/...``, the
same paths a command sees. The server keeps running until ``stop`` or ``destroy`` (it
outlives the Python process that started it); background processes end with it, unless they
detached themselves from it (a double fork).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.container_server import procs
from sandbox.deployments.base import (
    SECRET_ENV,
    SOCKET_NAME,
    RunFolder,
    server_listening,
    socket_inode,
    wait_for_new_socket,
)
from sandbox.models import WorkspaceInfo, WorkspaceSpec, validate_workspace_id
from sandbox.server_bundle import SERVER_SOURCE

SERVER_START_TIMEOUT = 15.0


class LocalDeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path
    """The folder holding the workspaces' folders (a temporary folder, typically)."""
    python: str = sys.executable
    """The interpreter that runs the server (stdlib only, 3.10 or later)."""


class LocalDeployment(RunFolder):
    """One workspace as a host folder served by a host subprocess (see the module docstring)."""

    def __init__(self, workspace_id: str, config: LocalDeploymentConfig):
        self.workspace_id = validate_workspace_id(workspace_id)
        self.config = config
        root = config.root.resolve()  # the server compares paths as given: no symlinks on the way
        self.workspace_dir = root / workspace_id / "workspace"
        self.shared_dir = root / "shared"
        self.run_dir = root / workspace_id / "run"
        self._process: subprocess.Popen | None = None

    @property
    def server_uid(self) -> int:
        return os.geteuid()  # the server is our own subprocess

    def exists(self) -> bool:
        return self.workspace_dir.is_dir()

    def ensure(self, spec: WorkspaceSpec | None) -> WorkspaceInfo:
        for folder in (self.workspace_dir, self.shared_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        if not server_listening(self.socket_path):
            self.launch_server()
        return self.info()

    def start(self) -> None:
        if not self.exists():
            raise WorkspaceUnavailable(f"local workspace {self.workspace_id!r} has no folder; create it first")
        if not server_listening(self.socket_path):
            self.launch_server()

    def is_running(self) -> bool:
        return server_listening(self.socket_path)

    def launch_server(self) -> None:
        """Start the server (one that still runs is replaced: it takes over the socket's lock)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        before = socket_inode(self.socket_path)
        log_path = self.run_dir / "server.log"
        secret = secrets.token_hex(32)  # this start's: the host side proves it knows it, and so must the server
        fd = os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret)
        with open(log_path, "ab") as log:
            try:
                self._process = subprocess.Popen(
                    [self.config.python, "-u", str(SERVER_SOURCE / "server.py"), "--socket", str(self.socket_path),
                     "--workspace-root", str(self.workspace_dir), "--shared-root", str(self.shared_dir)],
                    cwd=self.workspace_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    # Commands get the server's own base environment; the server takes its secret out of it.
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", SECRET_ENV: secret},
                )
            except OSError as exc:
                raise WorkspaceUnavailable(f"cannot start the local server with {self.config.python}: {exc}") from None
        process = self._process
        if wait_for_new_socket(self.socket_path, before, SERVER_START_TIMEOUT, lambda: process.poll() is None):
            return
        self._end(process.pid)
        tail = log_path.read_bytes()[-2000:].decode("utf-8", "replace")
        raise WorkspaceUnavailable(f"the local server of workspace {self.workspace_id!r} did not start: {tail}")

    def _server_pid(self) -> int | None:
        """The pid in the server's lock file, if that process is still this workspace's server."""
        try:
            pid = int((self.run_dir / f"{SOCKET_NAME}.lock").read_text().strip() or 0)
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.socket_path).encode() in cmdline else None  # not a reused pid

    def _end(self, pid: int) -> None:
        """SIGKILL the server and every process below it (commands, background jobs)."""
        below = procs.tree_of(pid)  # the server's own table walk: descendants, their groups and sessions
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # first: it starts nothing new while the rest go
        for child in below:
            for kill in (os.killpg, os.kill):  # each command leads a session of its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(child, signal.SIGKILL)
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=10)  # our child: reap it
            self._process = None

    def stop(self) -> None:
        pid = self._server_pid()
        if pid is not None:
            self._end(pid)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def destroy(self, remove_volume: bool) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.secret_path.unlink(missing_ok=True)
        if remove_volume:
            shutil.rmtree(self.workspace_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.workspace_dir.parent.rmdir()  # only when nothing else is left in it

    def info(self) -> WorkspaceInfo:
        status = "running" if self.is_running() else "stopped" if self.exists() else "missing"
        return WorkspaceInfo(
            workspace_id=self.workspace_id, installation_id=f"local:{self.config.root}", status=status,
            container_name=f"local:{self.workspace_id}", volume_name=str(self.workspace_dir),
            image=f"host:{self.config.python}",
        )
