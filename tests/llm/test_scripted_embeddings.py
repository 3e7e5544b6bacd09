"""The scripted model's /v1/embeddings over real HTTP: OpenAI's shape, deterministic vectors."""

from __future__ import annotations

import math

import httpx
import pytest

from quadracode_ray.config import Settings
from quadracode_ray.llm.scripted.embeddings import embed_text
from quadracode_ray.persistence.store_index import HttpEmbeddings, store_index


def test_embeddings_have_openais_shape_and_are_deterministic(scripted_server) -> None:
    body = {"model": "embed", "input": ["a cat on a mat", "a cat on a mat", "dogs"], "dimensions": 32}
    answer = httpx.post(f"{scripted_server.url}/v1/embeddings", json=body).json()
    assert answer["object"] == "list" and answer["model"] == "embed"
    vectors = [item["embedding"] for item in answer["data"]]
    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    assert all(len(v) == 32 for v in vectors)
    assert vectors[0] == vectors[1] == embed_text("a cat on a mat", 32)
    assert math.isclose(sum(x * x for x in vectors[2]), 1.0)
    assert answer["usage"]["prompt_tokens"] == 11  # words
    one = httpx.post(f"{scripted_server.url}/embeddings", json={"model": "m", "input": "dogs"}).json()
    assert len(one["data"][0]["embedding"]) == 256  # the default size


@pytest.mark.parametrize("body", [{"model": "m"}, {"model": "m", "input": []}, {"model": "m", "input": [3]},
                                  {"model": "m", "input": "x", "dimensions": 0}, {"input": "x"}])
def test_malformed_requests_get_400(scripted_server, body: dict) -> None:
    answer = httpx.post(f"{scripted_server.url}/v1/embeddings", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["message"]


async def test_store_index_embeddings_from_settings(scripted_server) -> None:
    assert store_index(Settings(_env_file=None)) is None  # no dims, no index (as the official default)
    index = store_index(Settings(_env_file=None, store_index_dims=16, store_index_fields=["text"],
                                 scripted_server_url=scripted_server.url))
    assert index["dims"] == 16 and index["fields"] == ["text"]
    embeddings = index["embed"]
    assert await embeddings.aembed_query("hello") == embeddings.embed_query("hello") == embed_text("hello", 16)
    broken = HttpEmbeddings(f"{scripted_server.url}/nowhere", "m", 16)
    with pytest.raises(RuntimeError, match="answered 404"):
        await broken.aembed_documents(["x"])
