"""The store routes over real HTTP with the official langgraph-sdk client."""

from __future__ import annotations

import json
import logging
import math
import uuid

import httpx
import pytest
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph_sdk.errors import UnprocessableEntityError
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from quadracode_ray.llm.scripted.embeddings import embed_text
from serve_app import store_service
from serve_app.store_service import ScopedStore, StoreSearchRequest
from tests.api.conftest import STORE_INDEX_DIMS


@pytest.fixture
def root() -> str:
    """A namespace root of this test's own, so tests sharing the session deployment never meet."""
    return f"t{uuid.uuid4().hex[:10]}"


async def test_put_get_delete_item(lg_client, root: str) -> None:
    await lg_client.store.put_item([root, "users"], "u1", {"name": "Ada", "age": 36})
    item = await lg_client.store.get_item([root, "users"], "u1")
    assert item["namespace"] == [root, "users"]
    assert item["key"] == "u1"
    assert item["value"] == {"name": "Ada", "age": 36}
    assert set(item) == {"namespace", "key", "value", "created_at", "updated_at"}

    await lg_client.store.put_item([root, "users"], "u1", {"name": "Ada", "age": 37})
    updated = await lg_client.store.get_item([root, "users"], "u1")
    assert updated["value"]["age"] == 37
    assert updated["created_at"] == item["created_at"]
    assert updated["updated_at"] >= item["updated_at"]

    await lg_client.store.delete_item([root, "users"], "u1")
    assert await lg_client.store.get_item([root, "users"], "u1") is None


async def test_missing_item_reads_as_null(lg_client, root: str) -> None:
    assert await lg_client.store.get_item([root], "nobody") is None


async def test_search_by_prefix_filter_limit_offset(lg_client, root: str) -> None:
    for index in range(5):
        await lg_client.store.put_item([root, "docs", f"d{index % 2}"], f"k{index}",
                                       {"n": index, "kind": "even" if index % 2 == 0 else "odd"})
    await lg_client.store.put_item([f"{root}x", "docs"], "elsewhere", {"n": 99})

    everything = (await lg_client.store.search_items([root]))["items"]
    assert sorted(item["key"] for item in everything) == ["k0", "k1", "k2", "k3", "k4"]
    assert all("score" in item for item in everything)

    evens = (await lg_client.store.search_items([root, "docs"], filter={"kind": "even"}))["items"]
    assert sorted(item["value"]["n"] for item in evens) == [0, 2, 4]

    page1 = (await lg_client.store.search_items([root], limit=2, offset=0))["items"]
    page2 = (await lg_client.store.search_items([root], limit=2, offset=2))["items"]
    assert len(page1) == 2 and len(page2) == 2
    assert not {i["key"] for i in page1} & {i["key"] for i in page2}

    # A query ranks (the session's store has a semantic index) but never drops matching items.
    queried = (await lg_client.store.search_items([root, "docs", "d0"], query="anything"))["items"]
    assert sorted(item["key"] for item in queried) == ["k0", "k2", "k4"]


async def test_list_namespaces_prefix_suffix_depth(lg_client, root: str) -> None:
    for namespace in ([root, "a", "x"], [root, "a", "y"], [root, "b", "x"]):
        await lg_client.store.put_item(namespace, "k", {"v": 1})

    listed = (await lg_client.store.list_namespaces(prefix=[root]))["namespaces"]
    assert sorted(listed) == [[root, "a", "x"], [root, "a", "y"], [root, "b", "x"]]

    by_suffix = (await lg_client.store.list_namespaces(prefix=[root], suffix=["x"]))["namespaces"]
    assert sorted(by_suffix) == [[root, "a", "x"], [root, "b", "x"]]

    shallow = (await lg_client.store.list_namespaces(prefix=[root], max_depth=2))["namespaces"]
    assert sorted(shallow) == [[root, "a"], [root, "b"]]

    limited = (await lg_client.store.list_namespaces(prefix=[root], limit=1, offset=1))["namespaces"]
    assert len(limited) == 1 and limited[0] in listed


@pytest.mark.parametrize("labels", [["has.dot"], [""], ["~owner:alice"]])
async def test_bad_namespace_is_rejected_and_nothing_is_written(api_url: str, lg_client, root: str,
                                                                labels: list[str]) -> None:
    # Raw HTTP: the SDK refuses dotted labels itself before sending.
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.put("/store/items", json={"namespace": [root, *labels], "key": "k", "value": {}})
        empty = await http.put("/store/items", json={"namespace": [], "key": "k", "value": {}})
    assert response.status_code == 422
    assert empty.status_code == 422
    assert (await lg_client.store.search_items([root]))["items"] == []
    with pytest.raises(UnprocessableEntityError):
        await lg_client.store.search_items([root, ""])


def test_malformed_bodies_get_422_with_a_reason(api_url: str) -> None:
    not_an_object = httpx.put(f"{api_url}/store/items", json={"namespace": ["a"], "key": "k", "value": 3})
    assert not_an_object.status_code == 422
    assert "value" in not_an_object.text
    bad_get = httpx.get(f"{api_url}/store/items", params={"namespace": "a..b", "key": "k"})
    assert bad_get.status_code == 422
    assert "period" in bad_get.json()["detail"]
    missing_key = httpx.get(f"{api_url}/store/items", params={"namespace": "a"})
    assert missing_key.status_code == 422
    bad_limit = httpx.post(f"{api_url}/store/items/search", json={"namespace_prefix": ["a"], "limit": 0})
    assert bad_limit.status_code == 422
    unknown_field = httpx.post(f"{api_url}/store/namespaces", json={"prefixx": ["a"]})
    assert unknown_field.status_code == 422


def test_reserved_owner_label_cannot_be_named(api_url: str) -> None:
    response = httpx.put(f"{api_url}/store/items",
                         json={"namespace": ["~owner:alice"], "key": "k", "value": {}})
    assert response.status_code == 422
    assert "reserved" in response.text


def cosine(a: str, b: str) -> float:
    x, y = embed_text(a, STORE_INDEX_DIMS), embed_text(b, STORE_INDEX_DIMS)
    return sum(p * q for p, q in zip(x, y, strict=True)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))


async def test_query_ranks_items_by_meaning_with_scores(lg_client, root: str) -> None:
    """The session's store has a semantic index (scripted embeddings, the whole value embedded)."""
    docs = {"cats": {"text": "the cat sat on the mat with another cat"}, "dogs": {"text": "dogs chase red balls"},
            "both": {"text": "a cat and a dog"}}
    for key, value in docs.items():
        await lg_client.store.put_item([root, "docs"], key, value)
    found = (await lg_client.store.search_items([root], query="cat sat on the mat"))["items"]
    assert [item["key"] for item in found][0] == "cats"
    scores = [item["score"] for item in found]
    assert scores == sorted(scores, reverse=True)
    # The score is the cosine similarity of the query's and the item's embeddings (what is embedded
    # with fields ["$"]: the value's JSON with sorted keys).
    for item in found:
        expected = cosine("cat sat on the mat", json.dumps(docs[item["key"]], sort_keys=True))
        assert item["score"] == pytest.approx(expected, abs=1e-4)
    # Filters and the namespace prefix still apply to a query; limit cuts the ranking.
    filtered = (await lg_client.store.search_items([root], query="cat", filter={"text": "dogs chase red balls"}))
    assert [item["key"] for item in filtered["items"]] == ["dogs"]
    top = (await lg_client.store.search_items([root], query="cat sat on the mat", limit=1))["items"]
    assert [item["key"] for item in top] == ["cats"]


async def test_items_put_with_index_false_are_not_ranked(lg_client, root: str) -> None:
    await lg_client.store.put_item([root], "kept", {"text": "apples and pears"})
    await lg_client.store.put_item([root], "unindexed", {"text": "apples and pears"}, index=False)
    await lg_client.store.put_item([root], "title", {"title": "apples", "body": "zebra"}, index=["body"])
    found = {item["key"]: item["score"] for item in
             (await lg_client.store.search_items([root], query="apples"))["items"]}
    assert found["kept"] > 0.2
    assert found.get("unindexed") is None  # no vector: never ranked above anything
    # Only the listed field was embedded: "zebra" matches it, "apples" does not.
    assert found["title"] == pytest.approx(cosine("apples", "zebra"), abs=1e-4)
    by_body = (await lg_client.store.search_items([root], query="zebra", limit=1))["items"]
    assert by_body[0]["key"] == "title" and by_body[0]["score"] == pytest.approx(1.0, abs=1e-4)


async def test_a_query_without_an_index_answers_unranked_as_the_official_server(
        api_database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The official server without store.index ignores a query; ours does the same and says so."""
    async with AsyncConnectionPool(api_database_url, kwargs={"autocommit": True, "row_factory": dict_row},
                                   min_size=1, max_size=2, open=False) as pool:
        store = ScopedStore(AsyncPostgresStore(pool), owner=None)
        root = f"t{uuid.uuid4().hex[:10]}"
        await store.store.aput((root,), "a", {"text": "cat"})
        await store.store.aput((root,), "b", {"text": "dog"})
        store_service._warn_unindexed_query.cache_clear()  # it warns once per process
        with caplog.at_level(logging.WARNING, logger="serve_app.store_service"):
            items = await store.search(StoreSearchRequest(namespace_prefix=[root], query="cat"))
    assert sorted(item["key"] for item in items) == ["a", "b"]
    assert all(item["score"] is None for item in items)
    assert "no semantic index" in caplog.text
