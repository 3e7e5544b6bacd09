"""The backend protocol: *where* a workspace lives (deployment) apart from *what runs in it*
(runtime), as in SWE-ReX. A deployment owns the lifecycle of one workspace's machine —
container, VM, remote box — and says where its container server listens; the runtime (the container server
client in ``sandbox.runtime``) does the work. A new backend implements ``Deployment`` and runs
the conformance suite in ``sandbox.testing.conformance``.

Deployment methods are blocking (they talk to Docker and the like); the service calls them in
a worker thread so the actor's event loop never waits on them.
"""

from __future__ import annotations

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
