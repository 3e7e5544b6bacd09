"""Request and response models of the sandbox API (pydantic v2, unknown fields refused)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quadracode_ray.interfaces.network_allow import NetworkAccess, parse_allow_list
from quadracode_ray.interfaces.workspace import (
    ENV_NAME,
    ExecResult,
    FileInfo,
    SnapshotInfo,
    WorkspaceInvalidRequest,
)

__all__ = [
    "BackgroundOutput", "BackgroundProcess", "EgressRule", "ExecOutput", "SandboxActorInfo", "ExecRequest", "ExecResult", "FileInfo",
    "SandboxEvent", "SnapshotDiff", "SnapshotInfo", "WorkspaceInfo", "WorkspaceLimits", "WorkspaceSpec",
    "validate_workspace_id",
]

WORKSPACE_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def validate_workspace_id(workspace_id: str) -> str:
    """Workspace ids become Docker names and actor names, so they are kept to a safe alphabet."""
    if not isinstance(workspace_id, str) or not WORKSPACE_ID.fullmatch(workspace_id):
        raise WorkspaceInvalidRequest(
            f"invalid workspace id {workspace_id!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return workspace_id


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The least CPU limit Docker can give a container (as `docker run --cpus`): a CFS quota under
# 1 ms of each 100 ms period is refused by the kernel, and the container would not start.
MIN_CPUS = 0.01


class WorkspaceSpec(_Model):
    """How a workspace's container is made; unset limits take the installation's settings."""

    network: NetworkAccess | None = None
    """False: none; True: Docker's default bridge (never the infrastructure network); a list of
    ``HOST[:PORT[-PORT]]`` entries: only those (quadracode_ray.interfaces.network_allow);
    None: the installation's ``sandbox_network``."""
    memory_mb: int | None = Field(default=None, ge=64)
    cpus: float | None = Field(default=None, ge=MIN_CPUS)
    pids_limit: int | None = Field(default=None, ge=16)

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: object) -> object:
        return None if value is None else parse_allow_list(value)  # a ValueError naming the bad entry


class WorkspaceLimits(_Model):
    memory_mb: int
    cpus: float
    pids_limit: int
    network: NetworkAccess
    disk_mb: int = 0
    """Size of the workspace's own file system (its disk quota); 0: none."""


class EgressRule(_Model):
    """One allow-list entry as the host's firewall enforces it: the addresses its host had when
    the workspace was created, and the ports."""

    entry: str
    addresses: list[str]
    """IPv4 networks (``a.b.c.d/32`` for one address)."""
    ports: tuple[int, int]


class WorkspaceInfo(_Model):
    workspace_id: str
    installation_id: str
    status: Literal["running", "stopped", "missing"]
    container_id: str | None = None
    container_name: str
    volume_name: str
    """What holds /workspace: a Docker volume's name, or with a disk quota (or the local
    deployment) a folder on the host."""
    image: str
    limits: WorkspaceLimits | None = None
    disk_usage_bytes: int | None = None
    """Bytes used under /workspace (only known while running)."""
    disk_quota_bytes: int | None = None
    """Size of /workspace's file system when the workspace has a disk quota; writes past it fail (ENOSPC)."""
    egress: list[EgressRule] | None = None
    """With a network allow-list: what the firewall lets through (everything else is refused)."""
    created_at: datetime | None = None


MAX_COMMAND_BYTES = 100_000
"""Longer commands are refused up front (the kernel's limit for one argument is 128 KiB): write
a script with write_file and run that."""


class ExecRequest(_Model):
    command: str = Field(min_length=1)
    cwd: str = "."
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=60.0, gt=0, strict=True)
    """Seconds, a number (a string such as "10" is refused, not guessed at)."""

    @field_validator("command")
    @classmethod
    def _command_size(cls, command: str) -> str:
        if len(command.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES:
            raise ValueError(f"command longer than {MAX_COMMAND_BYTES} bytes; write it to a script file and run that")
        if "\x00" in command:
            raise ValueError("command contains a NUL byte")
        return command

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not re.fullmatch(ENV_NAME, key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\x00" in value:
                raise ValueError(f"environment variable {key} contains a NUL byte")
        return env


class ExecOutput(_Model):
    """A piece of output of a streamed exec; the stream ends with an ExecResult."""

    stream: Literal["stdout", "stderr"]
    data: str


class BackgroundProcess(_Model):
    process_id: str
    command: str
    pid: int
    status: Literal["running", "exited", "killed"]
    exit_code: int | None = None
    started_at: datetime
    ended_at: datetime | None = None


class BackgroundOutput(_Model):
    """Output since the offsets given to ``poll``; pass the returned offsets to the next poll."""

    process: BackgroundProcess
    stdout: str
    stderr: str
    stdout_offset: int
    stderr_offset: int
    truncated: bool


class SnapshotDiff(_Model):
    snapshot_id: str
    added: list[str]
    removed: list[str]
    modified: list[str]


class SandboxEvent(_Model):
    """One operation on a workspace, as reported to an EventSink."""

    workspace_id: str
    operation: str
    duration_ms: float
    outcome: Literal["ok", "error"]
    error: str | None = None
    at: datetime
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class SandboxActorInfo(_Model):
    """What a sandbox actor's ``ping`` says of itself. ``pid`` and ``worker_id`` change when the
    actor restarts; the worker id is the ``WorkerId`` label of its metrics; the node id says
    where it runs."""

    workspace_id: str
    pid: int
    worker_id: str
    node_id: str
