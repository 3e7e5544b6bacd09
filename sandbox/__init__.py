"""Workspace sandboxes: one Ray actor per workspace, each owning a hardened Docker container.

The actor layer gets a workspace with ``await sandbox.get_workspace(workspace_id, settings)``,
which returns a ``WorkspaceSandboxClient``. Every way in offers the operations of
``sandbox.protocol.WorkspaceOperations`` (which extends
``quadracode_ray.interfaces.workspace.WorkspaceClient``). See README.md in this folder.
"""

from sandbox.client import (
    DEFAULT_WORKSPACE,
    WorkspaceSandboxClient,
    existing_workspace,
    get_workspace,
    hand_over,
    restore_workspace,
    workspace_actor,
)
from sandbox.events import EventSink, FanOutSink, InMemoryEventSink
from sandbox.models import (
    BackgroundOutput,
    BackgroundProcess,
    ExecOutput,
    ExecRequest,
    SandboxActorInfo,
    SandboxEvent,
    SnapshotDiff,
    WorkspaceInfo,
    WorkspaceLimits,
    WorkspaceSpec,
)
from sandbox.protocol import WorkspaceOperations

__all__ = [
    "DEFAULT_WORKSPACE", "BackgroundOutput", "BackgroundProcess", "EventSink", "ExecOutput", "ExecRequest",
    "FanOutSink", "InMemoryEventSink", "SandboxActorInfo", "SandboxEvent", "SnapshotDiff", "WorkspaceInfo",
    "WorkspaceLimits", "WorkspaceOperations", "WorkspaceSandboxClient", "WorkspaceSpec", "existing_workspace",
    "get_workspace", "hand_over", "restore_workspace", "workspace_actor",
]
