"""Snapshots kept in Postgres (sandbox_snapshot_store=postgres): a snapshot saved on one "node"
(its own snapshot folder) is listed, fetched and checked on another that shares only the
database, in more than one chunk; a tampered chunk is caught by the sha256; delete removes both
copies; and with the "folder" store nothing reaches the database."""

from __future__ import annotations

import os

import psycopg
import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    SnapshotNotFound,
    WorkspaceError,
    WorkspaceUnavailable,
)
from sandbox import snapshot_rows
from sandbox.snapshots import drop_unrecorded_copies, snapshot_store
from sandbox.testing.conformance import tar_of


def node_settings(tmp_path, database_url: str, node: str, store: str = "postgres") -> Settings:
    return Settings(_env_file=None, database_url=database_url, data_dir=tmp_path / node,
                    sandbox_installation_id="pgsnap", sandbox_snapshot_store=store)


def chunk_rows(database_url: str, snapshot_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM qr_workspace_snapshot_chunks WHERE snapshot_id = %s",
                            (snapshot_id,)).fetchone()[0]


def test_a_snapshot_taken_on_one_node_is_restored_on_another_from_postgres(tmp_path, database_url, monkeypatch):
    monkeypatch.setattr(snapshot_rows, "CHUNK_BYTES", 4096)  # several chunks from a small tar
    here = snapshot_store(node_settings(tmp_path, database_url, "node-a"), "ws")
    data = tar_of({"a.txt": b"A", "big.bin": os.urandom(20_000)})
    info = here.save(data, "on node a")
    assert chunk_rows(database_url, info.snapshot_id) == -(-len(data) // 4096) >= 5

    there = snapshot_store(node_settings(tmp_path, database_url, "node-b"), "ws")
    assert not there.folder.exists()  # nothing shared but the database
    assert there.list() == [info]
    loaded, path = there.load(info.snapshot_id)
    assert loaded == info and path.read_bytes() == data and path.is_relative_to(tmp_path / "node-b")
    assert there.list() == [info]  # listed once: Postgres is the record, the folder a cache

    # A snapshot tampered with in the database is refused by its checksum on a node without a copy.
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE qr_workspace_snapshot_chunks SET data = 'tampered'::bytea "
                     "WHERE snapshot_id = %s AND seq = 1", (info.snapshot_id,))
    third = snapshot_store(node_settings(tmp_path, database_url, "node-c"), "ws")
    with pytest.raises(WorkspaceError, match="corrupt"):
        third.load(info.snapshot_id)
    assert list(third.folder.iterdir()) == []  # the bad tar is not kept
    # A node's cached copy that no longer matches is fetched again (here: the tampered one, refused).
    (there.folder / f"{info.snapshot_id}.tar").write_bytes(b"stale")
    with pytest.raises(WorkspaceError, match="corrupt"):
        there.load(info.snapshot_id)
    with pytest.raises(SnapshotNotFound):
        third.load("20000101T000000-0badc0de")

    copy_on_a = here.folder / f"{info.snapshot_id}.tar"
    there.delete(info.snapshot_id)  # gone for every node; node a still has its copy until it looks
    assert not (there.folder / f"{info.snapshot_id}.tar").exists() and copy_on_a.exists()
    assert here.list() == [] and third.list() == [] and chunk_rows(database_url, info.snapshot_id) == 0
    assert not copy_on_a.exists()  # listing found it is not in Postgres any more
    with pytest.raises(SnapshotNotFound):
        here.load(info.snapshot_id)
    with pytest.raises(SnapshotNotFound):
        third.delete(info.snapshot_id)


def test_the_folder_store_keeps_snapshots_out_of_the_database(tmp_path, database_url):
    folder = snapshot_store(node_settings(tmp_path, database_url, "node-a", store="folder"), "ws-f")
    assert folder.rows is None
    info = folder.save(tar_of({"f.txt": b"F"}), None)
    assert chunk_rows(database_url, info.snapshot_id) == 0
    assert snapshot_store(node_settings(tmp_path, database_url, "node-b"), "ws-f").list() == []
    assert snapshot_store(Settings(_env_file=None, data_dir=tmp_path / "x"), "ws-f").rows is None  # no database


def test_a_snapshot_postgres_refuses_is_no_snapshot_at_all(tmp_path, database_url):
    broken = snapshot_store(node_settings(tmp_path, database_url, "node-a"), "ws-b")
    broken.rows._url = database_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(WorkspaceUnavailable, match="Postgres"):
        broken.save(tar_of({"x": b"x"}), None)
    assert list(broken.folder.iterdir()) == []


def test_a_node_back_from_away_drops_its_copies_of_deleted_snapshots(tmp_path, database_url):
    """Deleted while node a was away: its copies go when a sandbox actor starts there
    (drop_unrecorded_copies), every workspace's folder at once; what is in Postgres stays, and so
    do snapshots the folder store left (not copies of Postgres')."""
    on_a = node_settings(tmp_path, database_url, "node-a")
    kept = snapshot_store(on_a, "ws-kept").save(tar_of({"k.txt": b"K"}), None)
    gone = [snapshot_store(on_a, ws).save(tar_of({"g.txt": ws.encode()}), None) for ws in ("ws-x", "ws-y")]
    folder_made = snapshot_store(node_settings(tmp_path, database_url, "node-a", store="folder"), "ws-x").save(
        tar_of({"f.txt": b"F"}), None)
    for info in gone:  # from node b, which has no copy
        snapshot_store(node_settings(tmp_path, database_url, "node-b"), info.workspace_id).delete(info.snapshot_id)
    copies = {info.snapshot_id: snapshot_store(on_a, info.workspace_id).folder / f"{info.snapshot_id}.tar"
              for info in (kept, *gone)}
    assert all(path.exists() for path in copies.values())

    assert drop_unrecorded_copies(on_a) == 4  # two tars and their metadata
    assert copies[kept.snapshot_id].exists() and not any(copies[info.snapshot_id].exists() for info in gone)
    folder_store = snapshot_store(node_settings(tmp_path, database_url, "node-a", store="folder"), "ws-x")
    assert folder_store.list() == [folder_made]
    assert drop_unrecorded_copies(node_settings(tmp_path, database_url, "node-a", store="folder")) == 0
