"""Store routes of the LangGraph Agent Server API: items put/get/delete, search, namespaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from serve_app.auth import current_owner
from serve_app.store_service import (
    KEY_PATTERN,
    NAMESPACE_QUERY_PATTERN,
    ScopedStore,
    StoreDeleteRequest,
    StoreItem,
    StoreListNamespacesRequest,
    StoreNamespacesResponse,
    StorePutRequest,
    StoreSearchRequest,
    StoreSearchResponse,
    get_store,
    parse_namespace_query,
)

router = APIRouter(tags=["Store"])


async def scoped_store(request: Request, owner: Annotated[str | None, Depends(current_owner)]) -> ScopedStore:
    return ScopedStore(await get_store(request), owner)


OwnStore = Annotated[ScopedStore, Depends(scoped_store)]


@router.put("/store/items", status_code=204, response_class=Response,
            summary="Store or update an item")
async def put_item(body: StorePutRequest, store: OwnStore) -> Response:
    await store.put(body)
    return Response(status_code=204)


@router.get("/store/items", response_model=StoreItem | None,
            summary="Get one item (null when it does not exist)")
async def get_item(
    store: OwnStore,
    # The pattern is documented, checked by parse_namespace_query (its 422 names the bad label).
    namespace: Annotated[str, Query(description="Namespace labels joined by '.', e.g. users.u1",
                                    json_schema_extra={"pattern": NAMESPACE_QUERY_PATTERN})],
    key: Annotated[str, Query(min_length=1, max_length=1024, pattern=KEY_PATTERN)],
    refresh_ttl: Annotated[bool | None, Query(description="Reset the item's ttl on this read.")] = None,
) -> dict | None:
    return await store.get(parse_namespace_query(namespace), key, refresh_ttl)


@router.delete("/store/items", status_code=204, response_class=Response, summary="Delete an item")
async def delete_item(body: StoreDeleteRequest, store: OwnStore) -> Response:
    await store.delete(body)
    return Response(status_code=204)


@router.post("/store/items/search", response_model=StoreSearchResponse,
             summary="Search items under a namespace prefix")
async def search_items(body: StoreSearchRequest, store: OwnStore) -> dict:
    return {"items": await store.search(body)}


@router.post("/store/namespaces", response_model=StoreNamespacesResponse,
             summary="List namespaces by prefix, suffix and depth")
async def list_namespaces(body: StoreListNamespacesRequest,
                          store: OwnStore) -> dict:
    return {"namespaces": await store.list_namespaces(body)}
