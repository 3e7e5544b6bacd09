"""The store's semantic index (``store_index_*`` settings), as langgraph.json's ``store.index``.

LangGraph's Postgres store keeps the vectors in pgvector (the embedded server ships it); this
module turns the settings into the store's ``IndexConfig``: dimensions, the JSON fields that are
embedded, and the embeddings, fetched from an OpenAI-compatible ``/embeddings`` endpoint
(``openai:<model>`` at ``openai_base_url``, or ``scripted:<name>``, the scripted model server's
deterministic vectors, which need no network and no key).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from langchain_core.embeddings import Embeddings
from langgraph.store.base import IndexConfig

from quadracode_ray.config import Settings

OPENAI_URL = "https://api.openai.com/v1"


class HttpEmbeddings(Embeddings):
    """Embeddings from an OpenAI-compatible ``POST {base_url}/embeddings``."""

    def __init__(self, base_url: str, model: str, dims: int, *, api_key: str | None = None,
                 timeout_s: float = 60.0):
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model, self.dims, self.timeout_s = model, dims, timeout_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "dimensions": self.dims}

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        if response.status_code != 200:
            raise RuntimeError(f"embeddings endpoint {self.url} answered {response.status_code}: "
                               f"{response.text[:300]}")
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        vectors = [item["embedding"] for item in data]
        if len(vectors) != count or any(len(v) != self.dims for v in vectors):
            raise RuntimeError(f"embeddings endpoint {self.url} answered {len(vectors)} vectors for {count} texts "
                               f"(expected {self.dims} dimensions each)")
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        response = httpx.post(self.url, json=self._body(texts), headers=self.headers, timeout=self.timeout_s)
        return self._vectors(response, len(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(self.url, json=self._body(texts), headers=self.headers)
        return self._vectors(response, len(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]


def embeddings_for(settings: Settings, dims: int) -> HttpEmbeddings:
    provider, model = settings.store_index_embed.split(":", 1)
    if provider == "scripted":
        from quadracode_ray.llm.scripted import ensure_scripted_server

        base_url = (settings.scripted_server_url or ensure_scripted_server()).rstrip("/") + "/v1"
        return HttpEmbeddings(base_url, model, dims)
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return HttpEmbeddings(settings.openai_base_url or OPENAI_URL, model, dims, api_key=api_key)


def store_index(settings: Settings) -> IndexConfig | None:
    """The store's ``index`` argument; None when no index is configured."""
    if settings.store_index_dims is None:
        return None
    dims = settings.store_index_dims
    return {"dims": dims, "embed": embeddings_for(settings, dims), "fields": list(settings.store_index_fields)}


async def open_store(pool: Any, settings: Settings, **options: Any) -> Any:
    """LangGraph's ``AsyncPostgresStore`` on ``pool`` with the configured index.

    With an index, the store's vector tables (pgvector's extension, ``store_vectors``) are
    created here on first use, under an advisory lock so concurrent processes do it once.
    ``options``: more arguments of the store (``ttl``).
    """
    from langgraph.store.postgres.aio import AsyncPostgresStore

    from quadracode_ray.persistence.migrations import ADVISORY_LOCK_KEY

    index = store_index(settings)
    store = AsyncPostgresStore(pool, index=index, **options)
    if index is not None:
        async with pool.connection() as conn:
            # Polled, not waited for in a statement: setup's CREATE INDEX CONCURRENTLY waits for
            # every open statement, so a process blocked in pg_advisory_lock meanwhile deadlocks it.
            while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked",
                                                 (ADVISORY_LOCK_KEY + 2,))).fetchone())["locked"]:
                await asyncio.sleep(0.05)
            try:
                await store.setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY + 2,))
    return store
