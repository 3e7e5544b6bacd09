"""Threads through the official SDK: CRUD, search, state, history, copy, prune."""

from __future__ import annotations

import uuid

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError


async def test_create_get_update_delete(lg_client) -> None:
    thread = await lg_client.threads.create(metadata={"k": "v"})
    tid = thread["thread_id"]
    assert thread["status"] == "idle" and thread["metadata"] == {"k": "v"} and thread["values"] is None
    with pytest.raises(ConflictError):
        await lg_client.threads.create(thread_id=tid)
    assert (await lg_client.threads.create(thread_id=tid, if_exists="do_nothing"))["metadata"] == {"k": "v"}
    updated = await lg_client.threads.update(tid, metadata={"k2": 2})
    assert updated["metadata"] == {"k": "v", "k2": 2}
    await lg_client.runs.wait(tid, "echo", input={"items": []})
    await lg_client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await lg_client.threads.get(tid)
    with pytest.raises(NotFoundError):
        await lg_client.threads.get_state(tid)


async def test_search_and_count(lg_client) -> None:
    tag = uuid.uuid4().hex
    ids = [(await lg_client.threads.create(metadata={"tag": tag}))["thread_id"] for _ in range(3)]
    await lg_client.runs.wait(ids[0], "echo", input={"items": ["v"]})
    found = await lg_client.threads.search(metadata={"tag": tag}, limit=10)
    assert sorted(t["thread_id"] for t in found) == sorted(ids)
    assert await lg_client.threads.count(metadata={"tag": tag}) == 3
    by_values = await lg_client.threads.search(metadata={"tag": tag}, values={"items": ["v", "a"]})
    assert [t["thread_id"] for t in by_values] == [ids[0]]
    idle = await lg_client.threads.search(metadata={"tag": tag}, status="idle", limit=1)
    assert len(idle) == 1


async def test_state_history_and_state_at_checkpoint(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    await lg_client.runs.wait(tid, "echo", input={"items": ["1"]})
    await lg_client.runs.wait(tid, "echo", input={"items": ["2"]})
    state = await lg_client.threads.get_state(tid)
    assert state["values"] == {"items": ["1", "a", "2", "a"]}
    assert state["next"] == [] and state["checkpoint"]["thread_id"] == tid
    history = await lg_client.threads.get_history(tid, limit=3)
    assert len(history) == 3
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    older = history[2]
    at = await lg_client.threads.get_state(tid, checkpoint_id=older["checkpoint"]["checkpoint_id"])
    assert at["values"] == older["values"]
    before = await lg_client.threads.get_history(tid, limit=1, before=history[0]["checkpoint"])
    assert before[0]["checkpoint"]["checkpoint_id"] == history[1]["checkpoint"]["checkpoint_id"]


async def test_update_state_as_node_then_run_continues(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    await lg_client.runs.wait(tid, "echo", input={"items": []})
    response = await lg_client.threads.update_state(tid, {"items": ["edited"]}, as_node="step")
    assert response["checkpoint"]["checkpoint_id"]
    state = await lg_client.threads.get_state(tid)
    assert state["values"]["items"] == ["a", "edited"]
    assert state["next"] == ["asker"]
    assert (await lg_client.threads.get(tid))["values"]["items"] == ["a", "edited"]


async def test_copy_keeps_state_and_prune(lg_client) -> None:
    tid = (await lg_client.threads.create(metadata={"src": 1}))["thread_id"]
    await lg_client.runs.wait(tid, "echo", input={"items": ["c"]})
    copy = await lg_client.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["metadata"]["src"] == 1
    assert (await lg_client.threads.get_state(copy["thread_id"]))["values"] == {"items": ["c", "a"]}
    await lg_client.runs.wait(copy["thread_id"], "echo", input={"items": ["more"]})
    assert (await lg_client.threads.get_state(tid))["values"] == {"items": ["c", "a"]}

    pruned = await lg_client.threads.prune([tid], strategy="keep_latest")
    assert pruned == {"pruned_count": 1}
    assert len(await lg_client.threads.get_history(tid, limit=10)) == 1
    assert (await lg_client.threads.prune([copy["thread_id"]]))["pruned_count"] == 1
    with pytest.raises(NotFoundError):
        await lg_client.threads.get(copy["thread_id"])


async def test_thread_validation(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        cases = [
            ("POST", "/threads", {"metadata": 3}, 422),
            ("POST", "/threads", {"thread_id": "nope"}, 422),
            ("POST", "/threads/search", {"status": "sleepy"}, 422),
            ("GET", "/threads/not-a-uuid", None, 422),
            ("GET", f"/threads/{uuid.uuid4()}", None, 404),
            ("PATCH", f"/threads/{uuid.uuid4()}", {"metadata": {}}, 404),
            ("DELETE", f"/threads/{uuid.uuid4()}", None, 404),
            ("GET", f"/threads/{uuid.uuid4()}/state", None, 404),
            ("POST", f"/threads/{uuid.uuid4()}/history", {"limit": 0}, 422),
            ("POST", "/threads/prune", {"thread_ids": []}, 422),
        ]
        for method, path, body, expected in cases:
            response = await http.request(method, path, json=body)
            assert response.status_code == expected, (method, path, response.text)
            assert "detail" in response.json()
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        no_graph = await http.post(f"/threads/{tid}/state", json={"values": {"items": []}})
        assert no_graph.status_code == 400


async def test_bad_values_are_422_not_500(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        nul = await http.post("/threads", json={"metadata": {"k": "a\u0000b"}})
        assert nul.status_code == 422, nul.text
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        await http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "echo", "input": {"items": []}})
        unknown_node = await http.post(f"/threads/{tid}/state", json={"values": {"items": []}, "as_node": "nope"})
        assert unknown_node.status_code == 422, unknown_node.text
        far = await http.post(f"/threads/{tid}/runs", json={"assistant_id": "echo", "after_seconds": 1e20})
        assert far.status_code == 422


async def test_create_with_supersteps_prepopulates_state(lg_client) -> None:
    thread = await lg_client.threads.create(
        graph_id="echo", supersteps=[{"updates": [{"values": {"items": ["seeded"]}, "as_node": "step"}]}])
    assert thread["values"] == {"items": ["seeded"]}
    state = await lg_client.threads.get_state(thread["thread_id"])
    assert state["values"] == {"items": ["seeded"]} and state["next"] == ["asker"]
