"""A deleted snapshot leaves no copy on any node.

With snapshots in Postgres (the default), each node that took or restored a snapshot keeps a
copy of its tar in its own snapshot folder. Deleting the snapshot removes the row and the copy of
the node that deletes it; ``drop_copies`` then removes the copies of every other live node that
can hold workspaces, with a task pinned to each (node affinity by the node's id, as placement
does for a workspace's actor). A node that was away then drops them when a sandbox actor next
starts on it (snapshots.drop_unrecorded_copies), and any node when it next lists that workspace's
snapshots. With the folder store there is one copy only (in the shared folder, or on the node
that took it), which ``SnapshotStore.delete`` removes.
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from quadracode_ray.config import Settings
from sandbox.placement import WORKSPACE_RESOURCE
from sandbox.snapshots import snapshot_store


@ray.remote(num_cpus=0, max_retries=0)
def _drop_copy(settings: Settings, workspace_id: str, snapshot_id: str) -> str:
    snapshot_store(settings, workspace_id).drop_copy(snapshot_id)  # files only: no database call
    return ray.get_runtime_context().get_node_id()


def drop_copies(settings: Settings, workspace_id: str, snapshot_id: str, timeout_s: float = 60.0) -> set[str]:
    """Remove the snapshot's copy on every live node that offers ``workspace`` (every live node on
    a cluster without that resource); returns the ids of the nodes where it was done."""
    alive = [node for node in ray.nodes() if node.get("Alive")]
    holders = [node for node in alive if node.get("Resources", {}).get(WORKSPACE_RESOURCE)] or alive
    refs = [_drop_copy.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
            .remote(settings, workspace_id, snapshot_id) for node in holders]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    done = set()
    for ref in ready:
        try:
            done.add(ray.get(ref))
        except Exception:  # noqa: BLE001 - its node went away meanwhile: it drops them when it is back
            continue
    return done
