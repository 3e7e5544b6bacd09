"""Durable snapshots of a workspace: a tar of /workspace plus its metadata, on the host.

Stored under ``<snapshot folder>/<installation>/<workspace>/`` as ``<id>.tar`` and
``<id>.json``, each written to a temporary file, fsynced and renamed, so a crash never leaves
a half snapshot that looks whole. With ``sandbox_snapshot_store = "postgres"`` (the default when
there is a database) each snapshot is also kept in Postgres (snapshot_rows.py), which is then
the record of what snapshots exist: any node lists and restores them, fetching a tar into its own
folder (a cache, ``<workspace>/from-postgres/``) first, with no folder shared between nodes; a
deleted snapshot's copies go from every node (snapshot_copies.py); snapshots left in a folder by
the "folder" store are not listed then. With ``"folder"`` only the folder holds them (on a cluster:
``sandbox_snapshot_dir`` on a folder every node mounts). The tar comes from the container, so it
is handled as hostile: streamed to disk with a size cap (never held whole in memory), read on the host only
as an uncompressed tar (no decompression bomb) and a member at a time (to diff); it is
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

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    SnapshotInfo,
    SnapshotNotFound,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspaceUnavailable,
)
from sandbox.container_server.wire import ManifestEntry
from sandbox.models import SnapshotDiff
from sandbox.snapshot_rows import SnapshotRows

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


def tar_manifest(source: bytes | Path) -> dict[str, ManifestEntry]:
    """Entries of a snapshot tar, typed as the container server's ``manifest`` reply. Only an
    uncompressed tar is read, a member at a time: a compressed one is refused, not inflated."""
    entries: dict[str, ManifestEntry] = {}
    fileobj = io.BytesIO(source) if isinstance(source, bytes | bytearray) else open(source, "rb")  # noqa: SIM115
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.TarError:
        fileobj.close()
        raise WorkspaceError("the snapshot is not an uncompressed tar; refusing to read it") from None
    with fileobj, tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if member.isfile():
                digest = hashlib.sha256()
                content = tar.extractfile(member)
                while block := content.read(1 << 20):
                    digest.update(block)
                entries[name] = ManifestEntry(type="file", size=member.size, sha256=digest.hexdigest())
            elif member.isdir():
                entries[name] = ManifestEntry(type="dir")
            elif member.issym():
                entries[name] = ManifestEntry(type="symlink", target=member.linkname)
            else:
                entries[name] = ManifestEntry(type="other")
    return entries


def _comparable(entry: ManifestEntry) -> tuple:
    return entry.type, entry.sha256, entry.target


def diff_manifests(snapshot_id: str, then: dict[str, ManifestEntry], now: dict[str, ManifestEntry]) -> SnapshotDiff:
    return SnapshotDiff(
        snapshot_id=snapshot_id,
        added=sorted(set(now) - set(then)),
        removed=sorted(set(then) - set(now)),
        modified=sorted(p for p in set(then) & set(now) if _comparable(then[p]) != _comparable(now[p])
                        and then[p].type != "dir"),
    )


class FileSink:
    """A streamed body written to a temporary file beside the snapshots, hashed as it comes,
    refused past ``limit`` bytes (the container decides what it sends, not how much we keep)."""

    def __init__(self, folder: Path, limit: int):
        self.folder, self.limit = folder, limit
        self.path: Path | None = None
        self.fh = None

    def reset(self) -> None:
        self.discard()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f".incoming-{uuid.uuid4().hex[:12]}.tmp"
        self.fh = open(self.path, "wb")  # noqa: SIM115 - closed by finish or discard
        self.size, self.digest = 0, hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise WorkspaceInvalidRequest(f"the snapshot is larger than the limit of {self.limit} bytes")
        self.fh.write(chunk)
        self.digest.update(chunk)

    def finish(self) -> tuple[Path, str, int]:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.fh = None
        path, self.path = self.path, None
        return path, self.digest.hexdigest(), self.size

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


POSTGRES_COPIES = "from-postgres"
"""With Postgres the record, a node's copies are in this subfolder of the workspace's folder: what
is there and not in Postgres is a deleted snapshot's copy (snapshots the "folder" store left in
the workspace's folder are never touched)."""


class SnapshotStore:
    """One workspace's snapshots: its folder, and with ``rows`` their Postgres copy too."""

    def __init__(self, root: Path, workspace_id: str, rows: SnapshotRows | None = None):
        self.workspace_id = workspace_id
        self.folder = root / workspace_id / POSTGRES_COPIES if rows is not None else root / workspace_id
        self.rows = rows

    def _paths(self, snapshot_id: str) -> tuple[Path, Path]:
        if not SNAPSHOT_ID.fullmatch(snapshot_id or ""):
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self.workspace_id!r}")
        return self.folder / f"{snapshot_id}.tar", self.folder / f"{snapshot_id}.json"

    def _missing(self, snapshot_id: str) -> SnapshotNotFound:
        return SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self.workspace_id!r}")

    def sink(self, limit: int) -> FileSink:
        return FileSink(self.folder, limit)

    def save(self, data: bytes, label: str | None) -> SnapshotInfo:
        sink = self.sink(len(data))
        sink.reset()
        sink.write(data)
        return self.keep(sink, label)

    def keep(self, sink: FileSink, label: str | None) -> SnapshotInfo:
        """Make a fully received sink a snapshot (renamed into place, in Postgres, metadata last)."""
        path, sha256, size = sink.finish()
        now = datetime.now(UTC)
        snapshot_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        info = SnapshotInfo(snapshot_id=snapshot_id, workspace_id=self.workspace_id, created_at=now,
                            sha256=sha256, size=size, label=label)
        tar_path, meta_path = self._paths(snapshot_id)
        if self.rows is not None:
            # In Postgres before the tar takes its name: a copy here without a row is one of a
            # deleted snapshot, which list() removes.
            try:
                self.rows.put(info, path)
            except Exception as exc:
                path.unlink(missing_ok=True)  # no snapshot at all rather than one other nodes miss
                raise WorkspaceUnavailable(f"the snapshot could not be stored in Postgres: {type(exc).__name__}: "
                                           f"{str(exc)[:200]}") from None
        os.replace(path, tar_path)
        _atomic_write(meta_path, info.model_dump_json().encode())  # metadata last: it marks completeness
        return info

    def list(self) -> list[SnapshotInfo]:
        if self.rows is not None:  # Postgres is the record; the folder only caches tars
            infos = self.rows.list()
            self.drop_unrecorded({info.snapshot_id for info in infos})
        elif self.folder.exists():
            infos = [SnapshotInfo.model_validate_json(p.read_bytes()) for p in self.folder.glob("*.json")]
        else:
            infos = []
        return sorted(infos, key=lambda i: (i.created_at, i.snapshot_id))

    def info(self, snapshot_id: str) -> SnapshotInfo:
        _tar, meta = self._paths(snapshot_id)
        if self.rows is not None:
            info = self.rows.info(snapshot_id)
        else:
            info = SnapshotInfo.model_validate_json(meta.read_bytes()) if meta.exists() else None
        if info is None:
            raise self._missing(snapshot_id)
        return info

    def load(self, snapshot_id: str) -> tuple[SnapshotInfo, Path]:
        """The snapshot and its tar's path, its sha256 checked (streamed, never read whole). With
        Postgres, a tar this node lacks (taken on another node), or whose copy here does not match,
        is fetched into this node's folder first; a fetched tar that does not match is not kept."""
        info = self.info(snapshot_id)
        path, meta = self._paths(snapshot_id)
        digest = _sha256(path)
        if self.rows is not None and digest != info.sha256:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.rows.fetch(snapshot_id, path)
            digest = _sha256(path)
            if digest != info.sha256:
                path.unlink(missing_ok=True)
            else:
                _atomic_write(meta, info.model_dump_json().encode())
        if digest is None:
            raise self._missing(snapshot_id)
        if digest != info.sha256:
            raise WorkspaceError(f"snapshot {snapshot_id} is corrupt: its content no longer matches sha256 {info.sha256}")
        return info, path

    def delete(self, snapshot_id: str) -> None:
        """Removes the snapshot (from Postgres too) and this node's copy. Other nodes' copies go with
        snapshot_copies.drop_copies (the sandbox actor calls it) or their next drop_unrecorded."""
        _tar, meta_path = self._paths(snapshot_id)
        found = self.rows.delete(snapshot_id) if self.rows is not None else meta_path.exists()
        if not found:
            raise self._missing(snapshot_id)
        self.drop_copy(snapshot_id)

    def drop_copy(self, snapshot_id: str) -> None:
        """This node's files of the snapshot (tar and metadata), whatever the record says."""
        tar_path, meta_path = self._paths(snapshot_id)
        meta_path.unlink(missing_ok=True)
        tar_path.unlink(missing_ok=True)

    def drop_unrecorded(self, recorded: set[str]) -> int:
        """With Postgres the record: this node's copies of snapshots that are not in it (deleted
        while this node was away) are removed; returns how many files."""
        dropped = 0
        if self.rows is None or not self.folder.is_dir():
            return dropped
        for path in self.folder.iterdir():
            if path.suffix in (".tar", ".json") and SNAPSHOT_ID.fullmatch(path.stem) and path.stem not in recorded:
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped


def _sha256(path: Path) -> str | None:
    """The file's sha256, streamed; None when there is no such file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def snapshot_store(settings: Settings, workspace_id: str) -> SnapshotStore:
    """The workspace's snapshots as ``settings`` keep them (see the module's docstring)."""
    rows = None
    if settings.sandbox_snapshot_store == "postgres" and settings.database_url:
        rows = SnapshotRows(settings.database_url, settings.sandbox_installation_id, workspace_id)
    return SnapshotStore(settings.snapshot_root, workspace_id, rows)


def drop_unrecorded_copies(settings: Settings) -> int:
    """This node's copies of snapshots deleted while it was away, in every workspace's folder of
    the installation (with Postgres the record; the sandbox actor runs it when it starts)."""
    root = settings.snapshot_root
    if settings.sandbox_snapshot_store != "postgres" or not settings.database_url or not root.is_dir():
        return 0
    recorded = SnapshotRows(settings.database_url, settings.sandbox_installation_id, "").recorded()
    return sum(snapshot_store(settings, folder.name).drop_unrecorded(recorded.get(folder.name, set()))
               for folder in root.iterdir() if folder.is_dir())
