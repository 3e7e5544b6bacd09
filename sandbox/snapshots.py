"""Durable snapshots of a workspace: a tar of /workspace plus its metadata, on the host.

Stored under ``<data_dir>/snapshots/<installation>/<workspace>/`` as ``<id>.tar`` and
``<id>.json``, each written to a temporary file, fsynced and renamed, so a crash never leaves
a half snapshot that looks whole. The tar is only ever *read* on the host (to diff); it is
extracted inside the container by the container server, which vets every member.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from quadracode_ray.interfaces.workspace import SnapshotInfo, SnapshotNotFound, WorkspaceError
from sandbox.models import SnapshotDiff

SNAPSHOT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{8}$")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def tar_manifest(data: bytes) -> dict[str, dict]:
    """Entries of a snapshot tar in the shape of the server's ``manifest``."""
    entries: dict[str, dict] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if member.isfile():
                content = tar.extractfile(member).read()
                entries[name] = {"type": "file", "size": member.size, "sha256": hashlib.sha256(content).hexdigest()}
            elif member.isdir():
                entries[name] = {"type": "dir"}
            elif member.issym():
                entries[name] = {"type": "symlink", "target": member.linkname}
            else:
                entries[name] = {"type": "other"}
    return entries


def _comparable(entry: dict) -> tuple:
    return entry.get("type"), entry.get("sha256"), entry.get("target")


def diff_manifests(snapshot_id: str, then: dict[str, dict], now: dict[str, dict]) -> SnapshotDiff:
    return SnapshotDiff(
        snapshot_id=snapshot_id,
        added=sorted(set(now) - set(then)),
        removed=sorted(set(then) - set(now)),
        modified=sorted(p for p in set(then) & set(now) if _comparable(then[p]) != _comparable(now[p])
                        and then[p].get("type") != "dir"),
    )


class SnapshotStore:
    def __init__(self, root: Path, workspace_id: str):
        self.workspace_id = workspace_id
        self.folder = root / workspace_id

    def _paths(self, snapshot_id: str) -> tuple[Path, Path]:
        if not SNAPSHOT_ID.match(snapshot_id or ""):
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self.workspace_id!r}")
        return self.folder / f"{snapshot_id}.tar", self.folder / f"{snapshot_id}.json"

    def save(self, data: bytes, label: str | None) -> SnapshotInfo:
        self.folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        snapshot_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        info = SnapshotInfo(snapshot_id=snapshot_id, workspace_id=self.workspace_id, created_at=now,
                            sha256=hashlib.sha256(data).hexdigest(), size=len(data), label=label)
        tar_path, meta_path = self._paths(snapshot_id)
        _atomic_write(tar_path, data)
        _atomic_write(meta_path, info.model_dump_json().encode())  # metadata last: it marks completeness
        return info

    def list(self) -> list[SnapshotInfo]:
        if not self.folder.exists():
            return []
        infos = [SnapshotInfo.model_validate_json(p.read_bytes()) for p in self.folder.glob("*.json")]
        return sorted(infos, key=lambda i: (i.created_at, i.snapshot_id))

    def info(self, snapshot_id: str) -> SnapshotInfo:
        _tar, meta = self._paths(snapshot_id)
        if not meta.exists():
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self.workspace_id!r}")
        return SnapshotInfo.model_validate_json(meta.read_bytes())

    def load(self, snapshot_id: str) -> tuple[SnapshotInfo, bytes]:
        info = self.info(snapshot_id)
        data = self._paths(snapshot_id)[0].read_bytes()
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise WorkspaceError(f"snapshot {snapshot_id} is corrupt: its content no longer matches sha256 {info.sha256}")
        return info, data

    def delete(self, snapshot_id: str) -> None:
        tar_path, meta_path = self._paths(snapshot_id)
        if not meta_path.exists():
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self.workspace_id!r}")
        meta_path.unlink()
        tar_path.unlink(missing_ok=True)
