"""Which Ray node holds each workspace's container, and how its actor is placed there.

A workspace's files live in a Docker volume of one machine, so its actor must always run on
the node whose Docker engine holds them. The first actor of a workspace is placed by
resources (a node offering ``workspace``); it records its node in Postgres
(``qr_workspace_nodes``) and every later actor of that workspace, restarts included, is placed
on that node with a hard node-affinity strategy. When that node is gone, the workspace is
``WorkspaceUnavailable`` (naming the node) until it is restored on another node from a
snapshot (``sandbox.client.restore_workspace``).

A node that comes back with a new Ray node id (the whole cluster restarted) is recognised by
its address when exactly one live node has it. Without a database URL (unit tests, a notebook
on a bare Ray) nothing is recorded and placement is by resources only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import ray

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceUnavailable

WORKSPACE_RESOURCE = "workspace"
# A sliver of the resource marks placement only: it does not cap how many workspaces a node runs.
RESOURCE_SLIVER = 0.01


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    node_ip: str


class PlacementRecords:
    """The ``qr_workspace_nodes`` rows of one installation (short sync connections: placement
    happens when an actor is created, not on every call)."""

    def __init__(self, database_url: str, installation_id: str):
        self._url = database_url
        self._installation = installation_id

    def get(self, workspace_id: str) -> NodeRecord | None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT node_id, node_ip FROM qr_workspace_nodes WHERE installation_id = %s AND workspace_id = %s",
                (self._installation, workspace_id)).fetchone()
        return NodeRecord(*row) if row else None

    def claim(self, workspace_id: str, node: NodeRecord) -> NodeRecord:
        """Record ``node`` unless a node is already recorded; returns the recorded one."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO qr_workspace_nodes (installation_id, workspace_id, node_id, node_ip) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (self._installation, workspace_id, node.node_id, node.node_ip))
        return self.get(workspace_id) or node

    def move(self, workspace_id: str, node: NodeRecord) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO qr_workspace_nodes (installation_id, workspace_id, node_id, node_ip) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (installation_id, workspace_id) "
                "DO UPDATE SET node_id = excluded.node_id, node_ip = excluded.node_ip, recorded_at = now()",
                (self._installation, workspace_id, node.node_id, node.node_ip))

    def forget(self, workspace_id: str) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute("DELETE FROM qr_workspace_nodes WHERE installation_id = %s AND workspace_id = %s",
                         (self._installation, workspace_id))


def placement_records(settings: Settings) -> PlacementRecords | None:
    return PlacementRecords(settings.database_url, settings.sandbox_installation_id) if settings.database_url else None


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def node_is_alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id for n in _alive_nodes())


def current_node() -> NodeRecord:
    """The node of the calling Ray worker."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in _alive_nodes():
        if node["NodeID"] == node_id:
            return NodeRecord(node_id, node["NodeManagerAddress"])
    return NodeRecord(node_id, ray.util.get_node_ip_address())


def _offers_workspaces(node: dict[str, Any], cluster_has_them: bool) -> bool:
    return not cluster_has_them or bool(node.get("Resources", {}).get(WORKSPACE_RESOURCE))


def unavailable(workspace_id: str, record: NodeRecord) -> WorkspaceUnavailable:
    return WorkspaceUnavailable(
        f"workspace {workspace_id!r} lives on Ray node {record.node_id} ({record.node_ip}), which is not "
        f"part of the cluster any more; restore it on another node from its latest snapshot "
        f"(sandbox.restore_workspace)"
    )


def resource_options() -> dict[str, Any]:
    """On a cluster whose Docker nodes offer ``workspace`` (cluster.yaml), a node offering it;
    a laptop without the resource places workspaces anywhere."""
    try:
        if ray.is_initialized() and ray.cluster_resources().get(WORKSPACE_RESOURCE):
            return {"resources": {WORKSPACE_RESOURCE: RESOURCE_SLIVER}}
    except Exception:  # noqa: BLE001 - placement is a preference, never a reason to fail
        pass
    return {}


def placement_options(workspace_id: str, settings: Settings) -> dict[str, Any]:
    """Actor options placing the workspace's actor on its recorded node (or by resources when it
    has none yet). Raises WorkspaceUnavailable when the recorded node is gone."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options = resource_options()
    records = placement_records(settings)
    record = records.get(workspace_id) if records else None
    if record is None:
        return options
    alive = _alive_nodes()
    if not any(n["NodeID"] == record.node_id for n in alive):
        has_workspaces = bool(ray.cluster_resources().get(WORKSPACE_RESOURCE))
        same_address = [n for n in alive if n["NodeManagerAddress"] == record.node_ip]
        if len(same_address) != 1 or not _offers_workspaces(same_address[0], has_workspaces):
            raise unavailable(workspace_id, record)
        # The same machine back with a new Ray node id (the cluster was restarted): its Docker
        # engine still holds the container.
        record = NodeRecord(same_address[0]["NodeID"], record.node_ip)
        records.move(workspace_id, record)
    return options | {"scheduling_strategy": NodeAffinitySchedulingStrategy(record.node_id, soft=False)}


def claim_current_node(workspace_id: str, settings: Settings) -> None:
    """Called by a workspace actor as it starts: record its node, or refuse to run on any node
    but the recorded one (a restart Ray placed elsewhere would start an empty container)."""
    records = placement_records(settings)
    if records is None:
        return
    here = current_node()
    recorded = records.claim(workspace_id, here)
    if recorded.node_id != here.node_id:
        raise unavailable(workspace_id, recorded) if not node_is_alive(recorded.node_id) else WorkspaceUnavailable(
            f"workspace {workspace_id!r} lives on Ray node {recorded.node_id} ({recorded.node_ip}); its actor "
            f"was started on node {here.node_id} and stops rather than start an empty workspace there"
        )
