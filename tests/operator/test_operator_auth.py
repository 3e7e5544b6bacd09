"""The operator routes with API keys: 401 without a key, 403 with an unknown one or a non-admin
key on admin routes, and each owner's workspaces and threads are 404s to the others."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.operator.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY

ADMIN_ROUTES = [("get", "/fleet/agents"), ("post", "/fleet/agents"), ("get", "/fleet"),
                ("delete", "/fleet/agents/x"), ("patch", "/fleet/agents/x"), ("get", "/system/status"),
                ("post", "/system/stop"), ("get", "/system/guardrails"), ("patch", "/system/guardrails"),
                ("get", "/events"), ("get", "/events/stream")]


def as_(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("method, path", [*ADMIN_ROUTES, ("get", "/workspaces"), ("post", "/threads/x/stop")])
def test_every_operator_route_needs_a_key(secured_api: str, method: str, path: str) -> None:
    assert httpx.request(method, secured_api + path).status_code == 401
    assert httpx.request(method, secured_api + path, headers=as_("wrong-" + uuid.uuid4().hex)).status_code == 403


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
def test_admin_routes_refuse_other_owners(secured_api: str, method: str, path: str) -> None:
    response = httpx.request(method, secured_api + path, headers=as_(ALICE_KEY), json={})
    assert response.status_code == 403 and "admin" in response.json()["detail"]


def test_an_admin_reaches_the_fleet_and_the_event_log(secured_api: str) -> None:
    assert httpx.get(secured_api + "/fleet", headers=as_(ADMIN_KEY)).status_code == 200
    assert httpx.get(secured_api + "/events", headers=as_(ADMIN_KEY), params={"limit": 1}).status_code == 200


async def test_workspaces_and_threads_belong_to_their_owner(secured_api: str) -> None:
    workspace_id = f"ws-alice-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=secured_api, timeout=180) as client:
        alice, bob, root = as_(ALICE_KEY), as_(BOB_KEY), as_(ADMIN_KEY)
        assert (await client.post("/workspaces", json={"workspace_id": workspace_id}, headers=alice)).status_code == 201
        mine = (await client.get("/workspaces", headers=alice)).json()
        assert [w["workspace_id"] for w in mine] == [workspace_id] and mine[0]["owner"] == "alice"
        assert (await client.put(f"/workspaces/{workspace_id}/files/content", params={"path": "secret.txt"},
                                 content=b"s3cret", headers=alice)).status_code == 200
        # Bob sees none of it, touches none of it, and cannot take the id.
        assert workspace_id not in {w["workspace_id"] for w in (await client.get("/workspaces", headers=bob)).json()}
        for method, path in [("get", ""), ("delete", ""), ("get", "/files/content?path=secret.txt"),
                             ("get", "/files?path=."), ("get", "/snapshots")]:
            assert (await client.request(method, f"/workspaces/{workspace_id}{path}", headers=bob)).status_code == 404
        assert (await client.post(f"/workspaces/{workspace_id}/exec", json={"command": "cat secret.txt"},
                                  headers=bob)).status_code == 404
        assert (await client.post("/workspaces", json={"workspace_id": workspace_id}, headers=bob)).status_code == 409
        assert (await client.get("/workspaces/default", headers=bob)).status_code == 404  # the fabric's own
        # The admin sees every workspace.
        assert (await client.get(f"/workspaces/{workspace_id}", headers=root)).json()["owner"] == "alice"

        thread_id = (await client.post("/threads", json={}, headers=alice)).json()["thread_id"]
        assert (await client.post(f"/threads/{thread_id}/stop", headers=bob)).status_code == 404
        assert (await client.post(f"/threads/{thread_id}/stop", headers=alice)).status_code == 200
        assert (await client.get("/events", params={"thread_id": thread_id}, headers=alice)).status_code == 200
        assert (await client.get("/events", params={"thread_id": thread_id}, headers=bob)).status_code == 404
        assert (await client.delete(f"/workspaces/{workspace_id}", headers=alice)).status_code == 200
