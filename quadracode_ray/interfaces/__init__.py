"""Small interfaces that graphs and tools are given, and that the layers above implement.

Graphs and tools in ``quadracode_ray`` import these, never Ray, the sandbox or actors: a
graph runs unchanged with the fakes in ``quadracode_ray.testing``, in a notebook, or in an
actor that passes real clients backed by workspace sandbox actors and the fleet.
"""

from quadracode_ray.interfaces.fleet import (
    AgentInfo,
    DelegationClient,
    FleetClient,
    FleetError,
    TaskInfo,
    TaskResult,
    TaskStatus,
)
from quadracode_ray.interfaces.workspace import (
    DEFAULT_WORKSPACE,
    ExecResult,
    FileInfo,
    PathEscapeError,
    SnapshotInfo,
    WorkspaceClient,
    WorkspaceError,
    WorkspaceNotFound,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "AgentInfo",
    "DelegationClient",
    "ExecResult",
    "FileInfo",
    "FleetClient",
    "FleetError",
    "PathEscapeError",
    "SnapshotInfo",
    "TaskInfo",
    "TaskResult",
    "TaskStatus",
    "WorkspaceClient",
    "WorkspaceError",
    "WorkspaceNotFound",
]
