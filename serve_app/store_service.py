"""The long-term memory store of the API: LangGraph's ``AsyncPostgresStore`` on the replica's pool.

Wire shapes are the official Agent Server's: items are ``{namespace, key, value, created_at,
updated_at}`` (search results add ``score``), namespaces are lists of non-empty labels without
periods (a GET names them joined by "."), and a missing item reads as ``null``.

With auth on, each owner has a private partition: every namespace is stored under a hidden
first label ``OWNER_LABEL_PREFIX + owner`` that callers never see nor can name.

A search's ``query`` ranks items by meaning when the store has a semantic index (settings
``store_index_*``, quadracode_ray/persistence/store_index.py): items come best first with their
``score``. Without an index the query cannot rank: as the official server, the search answers
the matching items unranked (``score`` null), and the replica logs a warning once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Request
from langgraph.store.base import Item
from langgraph.store.postgres.aio import AsyncPostgresStore
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from quadracode_ray.persistence.store_index import open_store

log = logging.getLogger(__name__)
OWNER_LABEL_PREFIX = "~owner:"
# Items written with a ttl are purged by a sweeper every few minutes; reads refresh the ttl by
# default, as the official server does.
TTL_SWEEP_MINUTES = 5


# What Postgres text and the "."-joined GET form can hold: no period, no NUL character.
LABEL_PATTERN = r"^[^.\x00]+$"
KEY_PATTERN = r"^[^\x00]+$"
NAMESPACE_QUERY_PATTERN = r"^[^.\x00]+(\.[^.\x00]+)*$"


def _check_namespace(labels: list[str]) -> list[str]:
    for label in labels:
        if not label or "." in label or "\x00" in label:
            raise ValueError(f"namespace label {label!r} must be a non-empty string without periods or NUL")
        if label.startswith(OWNER_LABEL_PREFIX):
            raise ValueError(f"namespace label {label!r} is reserved")
    return labels


Label = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=LABEL_PATTERN)]
Namespace = Annotated[list[Label], AfterValidator(_check_namespace)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=KEY_PATTERN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorePutRequest(_Request):
    namespace: Namespace = Field(min_length=1, description="Namespace path, e.g. ['users', 'u1'].")
    key: Key = Field(description="Key of the item within its namespace.")
    value: dict[str, Any] = Field(description="The item's JSON object value.")
    index: Literal[False] | list[str] | None = Field(
        default=None, description="Fields to index for semantic search (False: do not index).")
    ttl: float | None = Field(default=None, gt=0, description="Minutes the item lives (unset: forever).")


class StoreDeleteRequest(_Request):
    namespace: Namespace = Field(min_length=1)
    key: Key


class StoreSearchRequest(_Request):
    namespace_prefix: Namespace = Field(default_factory=list, description="Namespace prefix to search under.")
    filter: dict[str, Any] | None = Field(default=None, description="Exact-match (or $eq/$ne/$gt/...) filter on values.")
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    query: str | None = Field(default=None, description="Natural-language query (needs an embedding index).")
    refresh_ttl: bool | None = None


class StoreListNamespacesRequest(_Request):
    prefix: Namespace | None = None
    suffix: Namespace | None = None
    max_depth: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class StoreItem(BaseModel):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    created_at: str
    updated_at: str


class StoreSearchItem(StoreItem):
    score: float | None = None


class StoreSearchResponse(BaseModel):
    items: list[StoreSearchItem]


class StoreNamespacesResponse(BaseModel):
    namespaces: list[list[str]]


def parse_namespace_query(text: str) -> tuple[str, ...]:
    """The namespace of a GET: labels joined by '.'; raises 422 when malformed."""
    try:
        return tuple(_check_namespace(text.split(".")))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


class ScopedStore:
    """The store as one owner (or, with auth off, everyone) sees it."""

    def __init__(self, store: AsyncPostgresStore, owner: str | None):
        self.store = store
        self._root: tuple[str, ...] = () if owner is None else (OWNER_LABEL_PREFIX + owner,)

    def _in(self, namespace: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        return self._root + tuple(namespace)

    def _out(self, item: Item) -> dict[str, Any]:
        data = item.dict()
        data["namespace"] = data["namespace"][len(self._root):]
        return data

    async def put(self, body: StorePutRequest) -> None:
        await self.store.aput(self._in(body.namespace), body.key, body.value, index=body.index, ttl=body.ttl)

    async def get(self, namespace: tuple[str, ...], key: str, refresh_ttl: bool | None) -> dict | None:
        item = await self.store.aget(self._in(namespace), key, refresh_ttl=refresh_ttl)
        return None if item is None else self._out(item)

    async def delete(self, body: StoreDeleteRequest) -> None:
        await self.store.adelete(self._in(body.namespace), body.key)

    async def search(self, body: StoreSearchRequest) -> list[dict[str, Any]]:
        if body.query and self.store.index_config is None:
            _warn_unindexed_query()
        try:
            items = await self.store.asearch(
                self._in(body.namespace_prefix), query=body.query, filter=body.filter,
                limit=body.limit, offset=body.offset, refresh_ttl=body.refresh_ttl,
            )
        except ValueError as exc:  # the store's own check of the filter ("Unsupported operator: ...")
            raise HTTPException(status_code=422, detail=f"filter: {exc}") from None
        return [self._out(item) for item in items]

    async def list_namespaces(self, body: StoreListNamespacesRequest) -> list[list[str]]:
        # With a hidden root the prefix always includes it, and depth counts it too.
        prefix = self._in(body.prefix or ()) or None
        max_depth = None if body.max_depth is None else body.max_depth + len(self._root)
        found = await self.store.alist_namespaces(
            prefix=prefix, suffix=tuple(body.suffix) if body.suffix else None,
            max_depth=max_depth, limit=body.limit, offset=body.offset,
        )
        return [list(ns[len(self._root):]) for ns in found if not (self._root == () and _is_hidden(ns))]


def _is_hidden(namespace: tuple[str, ...]) -> bool:
    return bool(namespace) and namespace[0].startswith(OWNER_LABEL_PREFIX)


@functools.cache  # once per replica
def _warn_unindexed_query() -> None:
    log.warning("a store search has a query but the store has no semantic index (set store_index_dims): "
                "the query is ignored and items come unranked, as the official server answers")


_store_lock = asyncio.Lock()


async def get_store(request: Request) -> AsyncPostgresStore:
    """The replica's store, created on first use over the replica's pool (with its index, if any)."""
    state = request.app.state
    store = getattr(state, "langgraph_store", None)
    if store is None:
        async with _store_lock:
            store = getattr(state, "langgraph_store", None)
            if store is None:
                pool = await state.context.pool()
                store = await open_store(pool, state.context.settings,
                                         ttl={"refresh_on_read": True, "sweep_interval_minutes": TTL_SWEEP_MINUTES})
                await store.start_ttl_sweeper()
                state.langgraph_store = store
    return store
