"""A deleted snapshot's copies go from every node: drop_copies runs a task pinned to each live node
that can hold workspaces and removes that node's copy of the tar (the record in Postgres is the
store's: it stays until SnapshotStore.delete). On the session's single-node Ray; multinode_cases.py
checks it reaches each workspace node of a cluster and no other."""

from __future__ import annotations

import pytest
import ray

from quadracode_ray.config import Settings
from sandbox.snapshot_copies import drop_copies
from sandbox.snapshots import snapshot_store
from sandbox.testing.conformance import tar_of

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_drop_copies_removes_the_copy_on_every_live_node(tmp_path, database_url):
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path,
                        sandbox_installation_id="copies")
    store = snapshot_store(settings, "ws-c")
    info = store.save(tar_of({"c.txt": b"C"}), None)
    tar, meta = store.folder / f"{info.snapshot_id}.tar", store.folder / f"{info.snapshot_id}.json"
    assert tar.exists() and meta.exists()

    done = drop_copies(settings, "ws-c", info.snapshot_id)
    assert done == {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert not tar.exists() and not meta.exists()
    # Only the copy: the snapshot is still recorded, and fetched again from Postgres when loaded.
    assert store.list() == [info]
    assert store.load(info.snapshot_id)[1].read_bytes() == tar_of({"c.txt": b"C"})
