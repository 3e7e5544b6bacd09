"""Workspaces over HTTP: create, list, inspect, destroy; exec (buffered or streamed over SSE),
background processes, snapshots, and the restore of a workspace whose node is gone onto another
node. Files are in workspace_files.py.

Errors are the sandbox's typed errors as HTTP statuses (serve_app/operator/fabric.py): a path
escape is a 400 with its message, a missing path or snapshot a 404, a workspace of another owner
a 404. A refused request changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import orjson
import ray
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.workspaces import EventBusSink
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.network_allow import parse_allow_list
from quadracode_ray.interfaces.workspace import ENV_NAME, ExecResult, SnapshotInfo
from sandbox.client import WorkspaceSandboxClient, get_workspace, restore_workspace
from sandbox.models import (
    MIN_CPUS,
    WORKSPACE_ID,
    BackgroundOutput,
    BackgroundProcess,
    EgressRule,
    ExecOutput,
    ExecRequest,
    SnapshotDiff,
    WorkspaceLimits,
    WorkspaceSpec,
)
from sandbox.placement import placement_records
from sandbox.snapshots import SNAPSHOT_ID
from serve_app.errors import Conflict, Invalid, NotFound
from serve_app.operator.access import CallerDep, context
from serve_app.operator.fabric import api_error, translated
from serve_app.operator.sse import sse_frame, sse_response
from serve_app.operator.workspace_access import (
    checked_id,
    claim_workspace,
    forget_workspace,
    live_workspace_ids,
    usable_row,
    workspace_client,
    workspace_row,
    workspace_rows,
)

router = APIRouter(tags=["Workspaces"])
DEFAULT_WORKSPACE = "default"
INFO_TIMEOUT_S = 30.0


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: str = Field(pattern=WORKSPACE_ID.pattern)
    network: bool | list[str] | None = Field(
        default=None, description="false: none; true: Docker's default bridge (never the infrastructure network); "
        "a list of HOST[:PORT[-PORT]] entries (host names, IPv4 addresses or CIDRs): only those, enforced by the "
        "host's firewall, DNS only for the listed names; unset: the installation's sandbox_network.")
    memory_mb: int | None = Field(default=None, ge=64, description="At most the installation's sandbox_memory_mb.")
    cpus: float | None = Field(default=None, ge=MIN_CPUS, description="At most the installation's sandbox_cpus.")
    pids_limit: int | None = Field(default=None, ge=16, description="At most the installation's sandbox_pids_limit.")

    _network = field_validator("network", mode="before")(
        classmethod(lambda cls, value: None if value is None else parse_allow_list(value)))


class WorkspaceView(BaseModel):
    workspace_id: str
    owner: str | None = None
    status: str = Field(description="running, stopped, missing (no container), or unavailable (no answer).")
    limits: WorkspaceLimits | None = None
    disk_usage_bytes: int | None = None
    egress: list[EgressRule] | None = Field(default=None, description="With a network allow-list: the addresses and "
                                            "ports its firewall lets through (host names as resolved at creation).")
    node: str | None = Field(default=None, description="Ray node id of its sandbox actor (and container).")
    image: str | None = None
    container_name: str | None = None
    created_at: datetime | None = None
    error: str | None = None


class DeletedWorkspace(BaseModel):
    workspace_id: str
    deleted: bool
    volumes_removed: bool


def _valid_env(env: dict[str, str]) -> dict[str, str]:
    """The sandbox's own rules for names and values, checked here so a bad one is a 422."""
    return ExecRequest._env_names(env)


# What _valid_env enforces, stated in the schema: names a shell can export, values without NUL.
ENV_SCHEMA = {"propertyNames": {"pattern": ENV_NAME}, "additionalProperties": {"type": "string", "pattern": "^[^\\x00]*$"}}


class ExecBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=100_000)
    cwd: str = "."
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=ENV_SCHEMA)
    timeout: float = Field(default=60.0, gt=0, description="Seconds; at most sandbox_max_exec_timeout_s.")

    _env = field_validator("env")(classmethod(lambda cls, env: _valid_env(env)))


class ProcessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=100_000)
    cwd: str = "."
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=ENV_SCHEMA)

    _env = field_validator("env")(classmethod(lambda cls, env: _valid_env(env)))


class SnapshotBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, max_length=200)


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshot_id: str | None = Field(default=None, pattern=SNAPSHOT_ID.pattern,
                                    description="The snapshot to restore (default: the workspace's latest).")


_ERROR_BODY = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


class RestoredWorkspace(BaseModel):
    workspace_id: str
    node: str = Field(description="Ray node id the workspace now lives on.")
    snapshot: SnapshotInfo


async def _view(client: WorkspaceSandboxClient, row: dict[str, Any] | None) -> WorkspaceView:
    base = {"workspace_id": client.workspace_id, "owner": row["owner"] if row else None}
    created_at = row["created_at"] if row else None
    try:
        info, ping = await asyncio.wait_for(asyncio.gather(client.info(), client.ping()), INFO_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - one workspace that does not answer must not fail the list
        error = api_error(exc)
        return WorkspaceView(**base, created_at=created_at, status="unavailable", error=error.detail if error else f"{type(exc).__name__}: {exc}")
    return WorkspaceView(**base, status=info.status, limits=info.limits, disk_usage_bytes=info.disk_usage_bytes, egress=info.egress,
                         node=ping.node_id or None, image=info.image,
                         container_name=info.container_name, created_at=created_at or info.created_at)


def create_limits(settings: Settings) -> dict[str, float]:
    """The most a new workspace may ask for, by WorkspaceCreate field (the schema states them too)."""
    return {"memory_mb": settings.sandbox_memory_mb, "cpus": settings.sandbox_cpus,
            "pids_limit": settings.sandbox_pids_limit}


def _check_limits(request: Request, body: WorkspaceCreate) -> None:
    for field, maximum in create_limits(context(request).settings).items():
        value = getattr(body, field)
        if value is not None and value > maximum:
            raise Invalid(f"{field}: {value} is over the configured maximum of {maximum} (sandbox_{field})")


@router.get("/workspaces", response_model=list[WorkspaceView], summary="The workspaces the caller may use")
async def list_workspaces(request: Request, caller: CallerDep) -> list[WorkspaceView]:
    ctx = context(request)
    rows = {row["workspace_id"]: row for row in await workspace_rows(ctx, caller.scope)}
    ids = set(rows)
    if caller.admin:
        ids |= set(await asyncio.to_thread(live_workspace_ids, ctx))
    clients = [await workspace_client(ctx, caller, workspace_id) for workspace_id in sorted(ids)]
    return list(await asyncio.gather(*(_view(c, rows.get(c.workspace_id)) for c in clients)))


@router.post("/workspaces", response_model=WorkspaceView, status_code=201,
             responses={200: {"model": WorkspaceView, "description": "It existed already with this spec."},
                        409: {"description": "The id is taken with another spec or by another owner, or the "
                                             "installation is at its cap of workspaces (operator_max_workspaces)."}},
             summary="Create a workspace (idempotent: the same request again is a 200; 409 at the cap)")
async def create_workspace(request: Request, body: WorkspaceCreate, caller: CallerDep, response: Response) -> WorkspaceView:
    ctx = context(request)
    checked_id(body.workspace_id)
    _check_limits(request, body)
    spec = WorkspaceSpec(network=body.network, memory_mb=body.memory_mb, cpus=body.cpus, pids_limit=body.pids_limit)
    if caller.owner is not None and not caller.admin and await workspace_row(ctx, body.workspace_id) is None \
            and body.workspace_id in await asyncio.to_thread(live_workspace_ids, ctx):
        raise Conflict(f"workspace id {body.workspace_id!r} is taken")
    row, inserted = await claim_workspace(ctx, body.workspace_id, caller.owner, spec.model_dump())
    if not inserted and not caller.admin and row["owner"] != caller.owner:
        raise Conflict(f"workspace id {body.workspace_id!r} is taken")
    try:
        with translated():
            client = await get_workspace(body.workspace_id, ctx.settings, spec=spec,
                                         event_sink=EventBusSink(ctx.settings))
    except BaseException:
        if inserted:
            await forget_workspace(ctx, body.workspace_id)
        raise
    if not inserted:
        response.status_code = 200
    return await _view(client, row)


@router.get("/workspaces/{workspace_id}", response_model=WorkspaceView,
            summary="A workspace's status, limits, disk usage and node")
async def get_workspace_view(request: Request, workspace_id: str, caller: CallerDep) -> WorkspaceView:
    ctx = context(request)
    client = await workspace_client(ctx, caller, workspace_id)
    return await _view(client, await workspace_row(ctx, workspace_id))


@router.delete("/workspaces/{workspace_id}", response_model=DeletedWorkspace,
               summary="Destroy a workspace's container (and with volumes=true its /workspace volume)")
async def delete_workspace(request: Request, workspace_id: str, caller: CallerDep,
                           volumes: Annotated[bool, Query(description="Also remove its volume (its files).")] = False,
                           ) -> DeletedWorkspace:
    ctx = context(request)
    client = await workspace_client(ctx, caller, workspace_id)
    if workspace_id == DEFAULT_WORKSPACE:
        raise Conflict("the default workspace always exists; it cannot be deleted")
    with translated():
        await client.destroy(remove_volume=volumes)
    ray.kill(client.handle, no_restart=True)
    await forget_workspace(ctx, workspace_id)
    return DeletedWorkspace(workspace_id=workspace_id, deleted=True, volumes_removed=volumes)


# --- exec ----------------------------------------------------------------------------------------
def _check_timeout(request: Request, timeout: float) -> None:
    maximum = context(request).settings.sandbox_max_exec_timeout_s
    if timeout > maximum:
        raise Invalid(f"timeout: {timeout} s is over the maximum of {maximum} s (sandbox_max_exec_timeout_s)")


async def _exec_frames(client: WorkspaceSandboxClient, body: ExecBody) -> AsyncIterator[bytes]:
    try:
        async for item in client.exec_stream(body.command, cwd=body.cwd, env=body.env, timeout=body.timeout):
            if isinstance(item, ExecOutput):
                yield sse_frame("output", orjson.dumps(item.model_dump(mode="json")).decode())
            else:
                yield sse_frame("result", orjson.dumps(item.model_dump(mode="json")).decode())
    except Exception as exc:  # noqa: BLE001 - the status line is sent; the error becomes the stream's last event
        error = api_error(exc)
        detail = {"status": error.status_code if error else 500,
                  "detail": error.detail if error else f"{type(exc).__name__}: {exc}"}
        yield sse_frame("error", orjson.dumps(detail).decode())


@router.post("/workspaces/{workspace_id}/exec", response_model=ExecResult,
             responses={200: {"content": {"text/event-stream": {}}, "description":
                              "With stream=true: SSE `output` events ({stream, data}) as the command writes, "
                              "then one `result` (an ExecResult) or `error` ({status, detail})."}},
             summary="Run a command in the workspace (buffered, or streamed over SSE with stream=true)")
async def exec_command(request: Request, workspace_id: str, body: ExecBody, caller: CallerDep,
                       stream: Annotated[bool, Query(description="Stream output over SSE as it comes.")] = False,
                       ) -> Any:
    _check_timeout(request, body.timeout)
    client = await workspace_client(context(request), caller, workspace_id)
    if stream:
        return sse_response(_exec_frames(client, body), heartbeat_s=15.0)
    with translated():
        return await client.exec(body.command, cwd=body.cwd, env=body.env, timeout=body.timeout)


# --- background processes ---------------------------------------------------------------------------
@router.post("/workspaces/{workspace_id}/processes", response_model=BackgroundProcess, status_code=201,
             summary="Start a background process")
async def start_process(request: Request, workspace_id: str, body: ProcessBody, caller: CallerDep) -> BackgroundProcess:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.start_process(body.command, cwd=body.cwd, env=body.env)


@router.get("/workspaces/{workspace_id}/processes", response_model=list[BackgroundProcess],
            summary="The workspace's background processes")
async def list_processes(request: Request, workspace_id: str, caller: CallerDep) -> list[BackgroundProcess]:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.list_processes()


@router.get("/workspaces/{workspace_id}/processes/{pid}", response_model=BackgroundOutput,
            summary="A background process's status and its output after the given offsets")
async def poll_process(request: Request, workspace_id: str, pid: str, caller: CallerDep,
                       stdout_offset: Annotated[int, Query(ge=0)] = 0,
                       stderr_offset: Annotated[int, Query(ge=0)] = 0) -> BackgroundOutput:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.poll_process(pid, stdout_offset=stdout_offset, stderr_offset=stderr_offset)


@router.delete("/workspaces/{workspace_id}/processes/{pid}", response_model=BackgroundProcess,
               summary="Kill a background process")
async def kill_process(request: Request, workspace_id: str, pid: str, caller: CallerDep) -> BackgroundProcess:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.kill_process(pid)


# --- snapshots -----------------------------------------------------------------------------------------
@router.get("/workspaces/{workspace_id}/snapshots", response_model=list[SnapshotInfo],
            summary="The workspace's snapshots")
async def list_snapshots(request: Request, workspace_id: str, caller: CallerDep) -> list[SnapshotInfo]:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.list_snapshots()


@router.post("/workspaces/{workspace_id}/snapshots", response_model=SnapshotInfo, status_code=201,
             summary="Snapshot the workspace's files")
async def create_snapshot(request: Request, workspace_id: str, caller: CallerDep,
                          body: SnapshotBody | None = None) -> SnapshotInfo:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.snapshot(body.label if body else None)


@router.get("/workspaces/{workspace_id}/snapshots/{snapshot_id}/diff", response_model=SnapshotDiff,
            summary="What changed since the snapshot (added, removed, modified paths)")
async def diff_snapshot(request: Request, workspace_id: str, snapshot_id: str, caller: CallerDep) -> SnapshotDiff:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.diff_snapshot(snapshot_id)


@router.post("/workspaces/{workspace_id}/snapshots/{snapshot_id}/restore", response_model=SnapshotInfo,
             summary="Put the workspace's files back as they were at the snapshot")
async def restore_snapshot(request: Request, workspace_id: str, snapshot_id: str, caller: CallerDep) -> SnapshotInfo:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        return await client.restore_snapshot(snapshot_id)


@router.post("/workspaces/{workspace_id}/restore", response_model=RestoredWorkspace,
             responses={404: {"description": "No such workspace (or another owner's), no recorded node, or no such "
                                             "snapshot (none at all: nothing to restore).", **_ERROR_BODY},
                        409: {"description": "Its node is alive: restore a snapshot in place "
                                             "(/snapshots/{snapshot_id}/restore).", **_ERROR_BODY},
                        503: {"description": "No live node can take it now, or the fabric does not answer.",
                              **_ERROR_BODY}},
             summary="Bring back a workspace whose node is gone: on another node offering `workspace`, "
                     "from a snapshot")
async def restore_lost_workspace(request: Request, workspace_id: str, caller: CallerDep,
                                 body: RestoreBody | None = None) -> RestoredWorkspace:
    ctx = context(request)
    row = await usable_row(ctx, caller, workspace_id)
    records = placement_records(ctx.settings)
    if records is None or await asyncio.to_thread(records.get, workspace_id) is None:
        raise NotFound(f"workspace {workspace_id!r} has no recorded node (it never ran here): nothing to restore")
    spec = WorkspaceSpec.model_validate(row["spec"]) if row and row["spec"] else None
    with translated():
        client, snapshot = await restore_workspace(workspace_id, ctx.settings,
                                                   snapshot_id=body.snapshot_id if body else None, spec=spec,
                                                   event_sink=EventBusSink(ctx.settings))
        node = (await client.ping()).node_id
    return RestoredWorkspace(workspace_id=workspace_id, node=node, snapshot=snapshot)
