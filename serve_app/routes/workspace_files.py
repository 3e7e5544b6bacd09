"""A workspace's files over HTTP: list and stat, raw download and upload (binary safe), delete,
and a folder as a tar archive both ways.

What comes out of a workspace is hostile: a file is served with a content type that a browser
will not run (HTML, SVG and scripts as text/plain), ``nosniff`` and a sandboxing CSP.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from quadracode_ray.interfaces.workspace import FileInfo
from serve_app.errors import ApiError
from serve_app.operator.access import CallerDep, context
from serve_app.operator.fabric import translated
from serve_app.operator.workspace_access import workspace_client

router = APIRouter(tags=["Workspace files"])
MAX_UPLOAD_BYTES = 256 << 20  # what one read of the sandbox returns at most, too
UNSAFE_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript", "application/javascript",
                "text/xml", "application/xml")
HOSTILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
PathQuery = Annotated[str, Query(min_length=1, max_length=4096, description="Relative to /workspace.")]


class TooLarge(ApiError):
    status_code = 413


class FileListing(BaseModel):
    path: str
    info: FileInfo = Field(description="The path itself (stat).")
    entries: list[FileInfo] = Field(description="A folder's entries (all levels with recursive=true); empty for a file.")


class DeletedPath(BaseModel):
    path: str
    deleted: bool


class ArchiveUploaded(BaseModel):
    path: str
    files: int = Field(description="Members extracted.")


def content_type(path: str) -> str:
    guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if guessed in UNSAFE_TYPES:
        return "text/plain; charset=utf-8"
    return guessed + ("; charset=utf-8" if guessed.startswith("text/") else "")


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise TooLarge(f"the body is over {MAX_UPLOAD_BYTES >> 20} MiB; upload a tar archive of smaller parts")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise TooLarge(f"the body is over {MAX_UPLOAD_BYTES >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/workspaces/{workspace_id}/files", response_model=FileListing,
            summary="Stat a path and, for a folder, list it")
async def list_files(request: Request, workspace_id: str, caller: CallerDep, path: PathQuery = ".",
                     recursive: Annotated[bool, Query(description="Every level below the folder.")] = False,
                     ) -> FileListing:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        info = await client.stat(path)
        entries = await client.list_files(path, recursive=recursive) if info.type == "dir" else []
    return FileListing(path=path, info=info, entries=entries)


@router.get("/workspaces/{workspace_id}/files/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes."}},
            summary="Download a file's raw bytes")
async def read_file(request: Request, workspace_id: str, path: PathQuery, caller: CallerDep) -> Response:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        data = await client.read_file(path)
    return Response(content=data, media_type=content_type(path), headers=HOSTILE_HEADERS)


@router.put("/workspaces/{workspace_id}/files/content", response_model=FileInfo,
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}},
            summary="Upload a file's raw bytes (the request body), creating its parent folders")
async def write_file(request: Request, workspace_id: str, path: PathQuery, caller: CallerDep) -> FileInfo:
    client = await workspace_client(context(request), caller, workspace_id)
    data = await _body(request)
    with translated():
        return await client.write_file(path, data)


@router.delete("/workspaces/{workspace_id}/files", response_model=DeletedPath, summary="Delete a file or folder")
async def delete_path(request: Request, workspace_id: str, path: PathQuery, caller: CallerDep,
                      recursive: Annotated[bool, Query(description="Needed for a non-empty folder.")] = False,
                      ) -> DeletedPath:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        await client.delete(path, recursive=recursive)
    return DeletedPath(path=path, deleted=True)


@router.get("/workspaces/{workspace_id}/archive", response_class=Response,
            responses={200: {"content": {"application/x-tar": {}}, "description": "A tar archive of the path."}},
            summary="Download a folder (or file) as a tar archive")
async def download_archive(request: Request, workspace_id: str, caller: CallerDep, path: PathQuery = ".") -> Response:
    client = await workspace_client(context(request), caller, workspace_id)
    with translated():
        data = await client.download_tar([path])
    return Response(content=data, media_type="application/x-tar", headers=HOSTILE_HEADERS)


@router.put("/workspaces/{workspace_id}/archive", response_model=ArchiveUploaded,
            openapi_extra={"requestBody": {"required": True, "content": {"application/x-tar": {
                "schema": {"type": "string", "format": "binary"}}}}},
            summary="Upload a tar archive (the request body) and extract it into a folder")
async def upload_archive(request: Request, workspace_id: str, caller: CallerDep, path: PathQuery = ".") -> ArchiveUploaded:
    client = await workspace_client(context(request), caller, workspace_id)
    data = await _body(request)
    with translated():
        files = await client.upload_tar(data, path)
    return ArchiveUploaded(path=path, files=files)
