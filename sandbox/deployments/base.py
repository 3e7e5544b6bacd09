"""The deployment interface: *where* a workspace lives apart from *what runs in it* (the
runtime), as in SWE-ReX. A deployment owns the lifecycle of one workspace's machine —
container, host folder, VM — and says where its in-container server listens; the runtime
(``sandbox.runtime``) does the work over that socket. Each backend is one module of this
folder (``docker.py``, ``local.py``); a new one implements ``Deployment`` and runs the
conformance suites in ``sandbox.testing.conformance``.

Deployment methods are blocking (they talk to Docker and the like); the service calls them in
a worker thread so the actor's event loop never waits on them.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from sandbox.models import WorkspaceInfo, WorkspaceSpec


@runtime_checkable
class Deployment(Protocol):
    workspace_id: str

    @property
    def socket_path(self) -> Path:
        """Where the container server of this workspace listens, on this host."""
        ...

    @property
    def server_secret(self) -> bytes:
        """The secret the running container server was started with (kept where the workspace cannot read it)."""
        ...

    @property
    def server_uid(self) -> int | None:
        """The uid the container server runs as, as this host sees it (None: not checked)."""
        ...

    def exists(self) -> bool: ...

    def ensure(self, spec: WorkspaceSpec | None) -> WorkspaceInfo:
        """Find (by label) or create the workspace, and start it. Idempotent.

        Raises WorkspaceConflict when it exists with a different spec than ``spec``."""
        ...

    def start(self) -> None:
        """Start a stopped workspace (no-op when running)."""
        ...

    def stop(self) -> None: ...

    def destroy(self, remove_volume: bool) -> None:
        """Remove the machine; the files too when ``remove_volume``. Idempotent."""
        ...

    def is_running(self) -> bool: ...

    def info(self) -> WorkspaceInfo: ...

    def launch_server(self) -> None:
        """(Re)start the container server inside a running workspace and wait until it listens."""
        ...


SOCKET_NAME = "exec.sock"
SECRET_ENV = "QUADRACODE_SERVER_SECRET"
"""The variable that hands the container server its secret at start."""


class RunFolder:
    """Where a backend's server listens and the secret it was started with: the socket in
    ``run_dir``, the secret beside that folder (outside what a container mounts)."""

    run_dir: Path

    @property
    def socket_path(self) -> Path:
        return self.run_dir / SOCKET_NAME

    @property
    def secret_path(self) -> Path:
        return self.run_dir.parent / "server.secret"

    @property
    def server_secret(self) -> bytes:
        try:
            return self.secret_path.read_bytes()
        except FileNotFoundError:
            return b""


# --- helpers every backend uses to watch its server's socket ------------------------------------------
def socket_inode(path: Path) -> int | None:
    """The inode of the socket at ``path`` (not following a symlink), None when there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino if stat.S_ISSOCK(st.st_mode) else None


def server_listening(path: Path) -> bool:
    """Whether a server accepts connections on the socket at ``path`` (opened as the runtime does:
    O_PATH|O_NOFOLLOW, so a symlink planted in its place is not followed)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
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


def wait_for_new_socket(path: Path, before: int | None, timeout_s: float,
                        still_starting: Callable[[], bool] = lambda: True) -> bool:
    """Poll (with a deadline) until a socket other than inode ``before`` is at ``path``: the
    server replaces its socket atomically once it listens. False on timeout, or as soon as
    ``still_starting()`` says the server process is gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inode = socket_inode(path)
        if inode is not None and inode != before:
            return True
        if not still_starting():
            return False
        time.sleep(0.01)
    return False
