"""POST /workspaces/{id}/restore over HTTP on one node: what it refuses, with reasons, changing
nothing. A workspace's lost node is simulated by recording it on a node id no cluster has; the
restore that succeeds onto another node is in tests/cluster/multinode_cases.py (real raylets)."""

from __future__ import annotations

import uuid

import httpx

from sandbox.placement import NodeRecord, placement_records
from tests.operator.conftest import ALICE_KEY, BOB_KEY

GONE = NodeRecord("f" * 56, "192.0.2.1")  # TEST-NET-1: no node of this cluster


async def test_restore_refuses_with_reasons_and_changes_nothing(http: httpx.AsyncClient, operator_settings):
    workspace_id = f"ws-rst-{uuid.uuid4().hex[:6]}"
    assert (await http.post("/workspaces", json={"workspace_id": workspace_id})).status_code == 201
    assert (await http.put(f"/workspaces/{workspace_id}/files/content", params={"path": "kept.txt"},
                           content=b"kept")).status_code == 200

    live = await http.post(f"/workspaces/{workspace_id}/restore")
    assert live.status_code == 409 and "live node" in live.json()["detail"] \
        and "restore_snapshot" in live.json()["detail"]

    records = placement_records(operator_settings)
    here = records.get(workspace_id)
    records.move(workspace_id, GONE)
    try:
        none = await http.post(f"/workspaces/{workspace_id}/restore")
        assert none.status_code == 404 and "no snapshot" in none.json()["detail"]
        unknown = await http.post(f"/workspaces/{workspace_id}/restore", json={"snapshot_id": "20000101T000000-0badc0de"})
        assert unknown.status_code == 404 and "0badc0de" in unknown.json()["detail"]
        malformed = await http.post(f"/workspaces/{workspace_id}/restore", json={"snapshot_id": "../../etc"})
        assert malformed.status_code == 422
        assert (await http.post(f"/workspaces/{workspace_id}/restore", json={"bogus": 1})).status_code == 422
        assert records.get(workspace_id) == GONE  # refused: the record stays, nothing was created
    finally:
        records.move(workspace_id, here)
    read = await http.get(f"/workspaces/{workspace_id}/files/content", params={"path": "kept.txt"})
    assert read.status_code == 200 and read.content == b"kept"  # its container and files untouched

    never = await http.post(f"/workspaces/never-ran-{uuid.uuid4().hex[:6]}/restore")
    assert never.status_code == 404 and "no recorded node" in never.json()["detail"]
    assert (await http.post("/workspaces/bad%20id/restore")).status_code == 400


async def test_restore_is_the_owners_alone(secured_api: str):
    workspace_id = f"ws-rsta-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=secured_api, timeout=180) as client:
        alice, bob = {"Authorization": f"Bearer {ALICE_KEY}"}, {"Authorization": f"Bearer {BOB_KEY}"}
        assert (await client.post("/workspaces", json={"workspace_id": workspace_id}, headers=alice)).status_code == 201
        assert (await client.post(f"/workspaces/{workspace_id}/restore")).status_code == 401
        assert (await client.post(f"/workspaces/{workspace_id}/restore", headers=bob)).status_code == 404
        assert (await client.post("/workspaces/default/restore", headers=bob)).status_code == 404  # the fabric's own
        assert (await client.post(f"/workspaces/{workspace_id}/restore", headers=alice)).status_code == 409
        assert (await client.delete(f"/workspaces/{workspace_id}", headers=alice)).status_code == 200


async def test_openapi_documents_restore(http: httpx.AsyncClient):
    spec = (await http.get("/openapi.json")).json()
    operation = spec["paths"]["/workspaces/{workspace_id}/restore"]["post"]
    assert operation["tags"] == ["Workspaces"]
    assert {"200", "404", "409", "503"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RestoredWorkspace")
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "snapshot_id" in str(spec["components"]["schemas"]["RestoreBody"]) and body
