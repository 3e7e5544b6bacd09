"""Workspace snapshots kept in Postgres as well as on disk, so any node of a cluster restores
them: the tables of migrations/workspaces/0002, one row per snapshot and its tar in chunks.

Written after the tar is whole on disk (``SnapshotStore.keep``), in one transaction (the
snapshot's row first, its chunks after, all visible at commit); read back a chunk at a time into
the reading node's snapshot folder, where ``SnapshotStore.load`` checks its sha256 as for any tar.
Short sync connections: every caller runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from quadracode_ray.interfaces.workspace import SnapshotInfo, SnapshotNotFound

CHUNK_BYTES = 1 << 20


class SnapshotRows:
    """The Postgres copy of one workspace's snapshots."""

    def __init__(self, database_url: str, installation_id: str, workspace_id: str):
        self._url = database_url
        self._key = (installation_id, workspace_id)

    def put(self, info: SnapshotInfo, tar: Path) -> None:
        with psycopg.connect(self._url) as conn, conn.transaction():
            conn.execute(
                "INSERT INTO qr_workspace_snapshots (installation_id, workspace_id, snapshot_id, info) "
                "VALUES (%s, %s, %s, %s)", (*self._key, info.snapshot_id, Jsonb(info.model_dump(mode="json"))))
            with open(tar, "rb") as fh:
                seq = 0
                while chunk := fh.read(CHUNK_BYTES):
                    conn.execute(
                        "INSERT INTO qr_workspace_snapshot_chunks "
                        "(installation_id, workspace_id, snapshot_id, seq, data) VALUES (%s, %s, %s, %s, %s)",
                        (*self._key, info.snapshot_id, seq, chunk))
                    seq += 1

    def list(self) -> list[SnapshotInfo]:
        with psycopg.connect(self._url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT info FROM qr_workspace_snapshots WHERE installation_id = %s AND workspace_id = %s",
                self._key).fetchall()
        return [SnapshotInfo.model_validate(info) for (info,) in rows]

    def info(self, snapshot_id: str) -> SnapshotInfo | None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT info FROM qr_workspace_snapshots WHERE installation_id = %s AND workspace_id = %s "
                "AND snapshot_id = %s", (*self._key, snapshot_id)).fetchone()
        return SnapshotInfo.model_validate(row[0]) if row else None

    def fetch(self, snapshot_id: str, dest: Path) -> None:
        """Write the snapshot's tar to ``dest`` (via a temporary file, renamed when whole)."""
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.fetch")
        try:
            with psycopg.connect(self._url) as conn, conn.transaction(), open(tmp, "wb") as fh:
                if conn.execute("SELECT 1 FROM qr_workspace_snapshots WHERE installation_id = %s AND "
                                "workspace_id = %s AND snapshot_id = %s", (*self._key, snapshot_id)).fetchone() is None:
                    raise SnapshotNotFound(f"no snapshot {snapshot_id!r} in workspace {self._key[1]!r}")
                with conn.cursor(name=f"snapshot_{uuid.uuid4().hex[:8]}") as cursor:  # server-side: a chunk at a time
                    cursor.itersize = 4
                    cursor.execute(
                        "SELECT data FROM qr_workspace_snapshot_chunks WHERE installation_id = %s AND "
                        "workspace_id = %s AND snapshot_id = %s ORDER BY seq", (*self._key, snapshot_id))
                    for (data,) in cursor:
                        fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def recorded(self) -> dict[str, set[str]]:
        """The snapshot ids of every workspace of the installation (this store's workspace aside)."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            rows = conn.execute("SELECT workspace_id, snapshot_id FROM qr_workspace_snapshots "
                                "WHERE installation_id = %s", (self._key[0],)).fetchall()
        recorded: dict[str, set[str]] = {}
        for workspace_id, snapshot_id in rows:
            recorded.setdefault(workspace_id, set()).add(snapshot_id)
        return recorded

    def delete(self, snapshot_id: str) -> bool:
        with psycopg.connect(self._url, autocommit=True) as conn:
            deleted = conn.execute(
                "DELETE FROM qr_workspace_snapshots WHERE installation_id = %s AND workspace_id = %s "
                "AND snapshot_id = %s", (*self._key, snapshot_id)).rowcount
        return bool(deleted)
