"""Bounding a tool's output when it is produced: past ``tool_result_max_chars`` the full text
is written to the workspace and the model gets its head, tail and the file path."""

from __future__ import annotations

from typing import Protocol

from quadracode_ray.interfaces import WorkspaceClient, WorkspaceError


class OutputBounds(Protocol):
    """What bounding needs of a policy (``quadracode_ray.graphs.ContextPolicy`` is one)."""

    @property
    def tool_result_max_chars(self) -> int: ...

    @property
    def offload_dir(self) -> str: ...


async def bound_output(text: str, *, workspace: WorkspaceClient | None, policy: OutputBounds,
                       name: str) -> str:
    """``text`` if short; else head and tail, with the full text written to the workspace."""
    limit = policy.tool_result_max_chars
    if len(text) <= limit:
        return text
    where = "it could not be saved (no workspace)"
    if workspace is not None:
        path = f"{policy.offload_dir}/{name}.txt"
        try:
            await workspace.write_file(path, text)
            where = f"the full output is in the workspace file {path}"
        except WorkspaceError as exc:
            where = f"saving the full output failed: {exc}"
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters omitted; {where}] ...\n{text[-half:]}"
