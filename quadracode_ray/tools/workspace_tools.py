"""exec, read_file, write_file, list_files and snapshot on a WorkspaceClient."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.interfaces import WorkspaceClient
from quadracode_ray.tools.base import Tool, ToolContext
from quadracode_ray.tools.output import bound_output

MAX_EXEC_TIMEOUT_S = 3600.0


class ExecArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, description="A bash command, run in the workspace.")
    cwd: str = Field(default=".", description="Folder relative to /workspace.")
    timeout_s: float = Field(default=120.0, gt=0, le=MAX_EXEC_TIMEOUT_S, description="Hard timeout in seconds.")


class PathArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, description="Path relative to /workspace.")


class WriteArgs(PathArgs):
    content: str = Field(description="The full text of the file.")


class ListArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(default=".", description="Folder relative to /workspace.")
    recursive: bool = False


class SnapshotArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(default=None, max_length=200)


def workspace_tools(workspace: WorkspaceClient) -> list[Tool]:
    async def run_exec(args: ExecArgs, ctx: ToolContext):
        result = await workspace.exec(args.command, cwd=args.cwd, timeout=args.timeout_s)
        half = ctx.policy.model_copy(update={"tool_result_max_chars": ctx.policy.tool_result_max_chars // 2})
        return {
            "exit_code": result.exit_code,
            "stdout": await bound_output(result.stdout, workspace=workspace, policy=half, name=f"exec-{ctx.call_id}-stdout"),
            "stderr": await bound_output(result.stderr, workspace=workspace, policy=half, name=f"exec-{ctx.call_id}-stderr"),
            "timed_out": result.timed_out,
            "truncated": result.truncated,
            "duration_ms": round(result.duration_ms, 1),
        }

    async def run_read(args: PathArgs, ctx: ToolContext):
        data = await workspace.read_file(args.path)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return {"error": f"{args.path} is binary ({len(data)} bytes); use exec to inspect it"}

    async def run_write(args: WriteArgs, ctx: ToolContext):
        info = await workspace.write_file(args.path, args.content)
        return {"path": info.path, "size": info.size}

    async def run_list(args: ListArgs, ctx: ToolContext):
        files = await workspace.list_files(args.path, recursive=args.recursive)
        return [{"path": f.path, "type": f.type, "size": f.size} for f in files]

    async def run_snapshot(args: SnapshotArgs, ctx: ToolContext):
        info = await workspace.snapshot(args.label)
        return {"snapshot_id": info.snapshot_id, "sha256": info.sha256, "size": info.size}

    return [
        Tool("exec", "Run a bash command in the workspace (the sandbox, never the host). Returns exit code, "
             "stdout and stderr; long outputs are saved to a workspace file.", ExecArgs, run_exec),
        Tool("read_file", "Read a text file of the workspace.", PathArgs, run_read),
        Tool("write_file", "Create or overwrite a file of the workspace with the given text.", WriteArgs, run_write),
        Tool("list_files", "List files of a workspace folder.", ListArgs, run_list),
        Tool("snapshot", "Take a snapshot of the whole workspace (it can be restored later).", SnapshotArgs,
             run_snapshot),
    ]
