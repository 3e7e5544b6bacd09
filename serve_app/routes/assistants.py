"""Assistants routes of the LangGraph Agent Server API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from quadracode_ray.graph_specs import BUILTIN_GRAPHS
from quadracode_ray.graphs.assistant_config import AssistantConfigError, read_assistant_config
from runs.graph_registry import GraphUnavailableError
from serve_app.auth import current_owner
from serve_app.context import AppContext
from serve_app.errors import Invalid, NotFound, Unavailable
from serve_app.graph_schemas import drawing, graph_schemas
from serve_app.records import assistants as records
from serve_app.responses import json_response, loads
from serve_app.runs.service import resolve_assistant_id
from serve_app.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionsSearch,
)

router = APIRouter(tags=["Assistants"])
Owner = Annotated[str | None, Depends(current_owner)]


def ctx(request: Request) -> AppContext:
    return request.app.state.context


def _check_builtin_config(context: AppContext, graph_id: str | None, config: dict | None, run_context: dict | None):
    """An assistant of a built-in graph is refused (422, nothing stored) when its settings
    (model, prompt, budget, guardrails, MCP servers) would fail every run."""
    entry = context.graphs.get(graph_id) if graph_id else None
    if entry is None or entry.spec not in BUILTIN_GRAPHS.values():
        return
    configurable = {**((config or {}).get("configurable") or {}), **(run_context or {})}
    try:
        read_assistant_config(configurable)
    except AssistantConfigError as exc:
        raise Invalid(str(exc)) from None


@router.post("/assistants", summary="Create an assistant")
async def create_assistant(body: AssistantCreate, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    if body.graph_id not in context.graphs.entries:
        raise NotFound(f"Graph '{body.graph_id}' not found. Expected one of: {context.graphs.ids()}")
    _check_builtin_config(context, body.graph_id, body.config, body.context)
    return json_response(await records.create(pool, body, owner))


@router.post("/assistants/search", summary="Search assistants")
async def search_assistants(body: AssistantSearch, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    items, total = await records.search(pool, body, owner)
    headers = {"X-Pagination-Total": str(total)}
    if body.offset + len(items) < total:
        headers["X-Pagination-Next"] = str(body.offset + len(items))
    return json_response(items, headers=headers)


@router.post("/assistants/count", summary="Count assistants")
async def count_assistants(body: AssistantCount, request: Request, owner: Owner):
    pool = await ctx(request).ready()
    return json_response(await records.count(pool, body, owner))


@router.get("/assistants/{assistant_id}", summary="Get an assistant")
async def get_assistant(assistant_id: str, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    return json_response(await records.get(pool, resolve_assistant_id(context, assistant_id), owner))


@router.patch("/assistants/{assistant_id}", summary="Update an assistant (makes a new version)")
async def patch_assistant(assistant_id: str, body: AssistantPatch, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    if body.graph_id is not None and body.graph_id not in context.graphs.entries:
        raise NotFound(f"Graph '{body.graph_id}' not found. Expected one of: {context.graphs.ids()}")
    assistant_id = resolve_assistant_id(context, assistant_id)
    if body.config is not None or body.context is not None:
        graph_id = body.graph_id or (await records.get(pool, assistant_id, owner))["graph_id"]
        _check_builtin_config(context, graph_id, body.config, body.context)
    return json_response(await records.update(pool, assistant_id, body, owner))


@router.delete("/assistants/{assistant_id}", summary="Delete an assistant")
async def delete_assistant(assistant_id: str, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    await records.delete(pool, resolve_assistant_id(context, assistant_id), owner)
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions", summary="List an assistant's versions")
async def list_versions(assistant_id: str, body: AssistantVersionsSearch, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    return json_response(await records.versions(pool, resolve_assistant_id(context, assistant_id), owner,
                                                metadata=body.metadata, limit=body.limit, offset=body.offset))


@router.post("/assistants/{assistant_id}/latest", summary="Make a version the assistant's latest")
async def set_latest(assistant_id: str, body: AssistantLatest, request: Request, owner: Owner):
    context = ctx(request)
    pool = await context.ready()
    return json_response(await records.set_latest(pool, resolve_assistant_id(context, assistant_id),
                                                  body.version, owner))


async def _graph(context: AppContext, assistant_id: str, owner: str | None):
    pool = await context.ready()
    assistant = await records.get(pool, resolve_assistant_id(context, assistant_id), owner)
    try:
        return await context.graphs.build(assistant["graph_id"], assistant["config"], checkpointer=None)
    except GraphUnavailableError as exc:
        raise Unavailable(str(exc)) from None


@router.get("/assistants/{assistant_id}/graph", summary="The assistant's graph (nodes and edges)")
async def get_graph(assistant_id: str, request: Request, owner: Owner, xray: str = "false"):
    graph = await _graph(ctx(request), assistant_id, owner)
    if xray.lower() in ("true", "false"):
        depth: bool | int = xray.lower() == "true"
    elif xray.isdigit():
        depth = int(xray)
    else:
        raise Invalid("xray must be true, false or a depth")
    drawable = await graph.aget_graph(xray=depth)
    return json_response(drawing(loads(json_response(drawable.to_json(with_schemas=False)).body)))


@router.get("/assistants/{assistant_id}/schemas", summary="The assistant's input, output, state and config schemas")
async def get_schemas(assistant_id: str, request: Request, owner: Owner):
    context = ctx(request)
    graph = await _graph(context, assistant_id, owner)
    pool = await context.ready()
    assistant = await records.get(pool, resolve_assistant_id(context, assistant_id), owner)
    return json_response(graph_schemas(graph, assistant["graph_id"]))


@router.get("/assistants/{assistant_id}/subgraphs", summary="The assistant's subgraphs and their schemas")
@router.get("/assistants/{assistant_id}/subgraphs/{namespace}", summary="One subgraph namespace")
async def get_subgraphs(assistant_id: str, request: Request, owner: Owner, namespace: str | None = None,
                        recurse: bool = False):
    graph = await _graph(ctx(request), assistant_id, owner)
    found = {ns: graph_schemas(sub, ns) async for ns, sub in graph.aget_subgraphs(namespace=namespace, recurse=recurse)}
    if namespace is not None and not found:
        raise NotFound(f"No subgraph {namespace!r}")
    return json_response(found)
