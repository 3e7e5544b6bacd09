"""Rows are scoped to their owner when auth names one (the records layer, on real Postgres)."""

from __future__ import annotations

import pytest

from quadracode_ray.persistence import open_async_pool
from serve_app.errors import NotFound
from serve_app.records import assistants, threads
from serve_app.schemas import AssistantCreate, AssistantSearch, ThreadCount, ThreadSearch


@pytest.fixture
async def pool(database_url: str):
    pool = await open_async_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_threads_of_one_owner_are_invisible_to_another(pool) -> None:
    thread, _ = await threads.create(pool, None, {"tag": "scoped"}, "raise", "alice")
    tid = str(thread["thread_id"])
    assert (await threads.get(pool, tid, "alice"))["thread_id"] == thread["thread_id"]
    assert (await threads.get(pool, tid, None))["thread_id"] == thread["thread_id"]  # auth off: all rows
    with pytest.raises(NotFound):
        await threads.get(pool, tid, "bob")
    with pytest.raises(NotFound):
        await threads.patch(pool, tid, {"x": 1}, "bob")
    assert await threads.delete_rows(pool, [tid], "bob") == []
    found, _ = await threads.search(pool, ThreadSearch(metadata={"tag": "scoped"}), "bob")
    assert found == []
    assert await threads.count(pool, ThreadCount(metadata={"tag": "scoped"}), "alice") == 1


async def test_assistants_are_scoped_but_system_assistants_are_shared(pool) -> None:
    await assistants.ensure_graph_assistants(pool, ["echo"])
    mine = await assistants.create(pool, AssistantCreate(graph_id="echo", metadata={"o": 1}), "alice")
    with pytest.raises(NotFound):
        await assistants.get(pool, str(mine["assistant_id"]), "bob")
    visible, _ = await assistants.search(pool, AssistantSearch(graph_id="echo", limit=100), "bob")
    assert [a["metadata"] for a in visible] == [{"created_by": "system"}]
    with pytest.raises(NotFound):
        await assistants.delete(pool, str(mine["assistant_id"]), "bob")


async def test_default_assistants_of_graphs_no_longer_registered_are_removed(pool) -> None:
    await assistants.ensure_graph_assistants(pool, ["echo", "gone_graph"])
    kept = await assistants.create(pool, AssistantCreate(graph_id="gone_graph", metadata={"o": 2}), "alice")
    # The next start registers no "gone_graph" (removed from the graphs file): its default
    # assistant goes, a client's own assistant of it stays (the client decides about it).
    await assistants.ensure_graph_assistants(pool, ["echo"])
    left, _ = await assistants.search(pool, AssistantSearch(graph_id="gone_graph", limit=100), "alice")
    assert [str(a["assistant_id"]) for a in left] == [str(kept["assistant_id"])]
    echo, _ = await assistants.search(pool, AssistantSearch(graph_id="echo", limit=100), None)
    assert any(a["metadata"] == {"created_by": "system"} for a in echo)
