"""Thread state from LangGraph's Postgres checkpoints: read, history, update (as a node)."""

from __future__ import annotations

from typing import Any

from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot

from runs.graph_registry import GraphUnavailableError
from runs.stream import dumps
from serve_app.context import AppContext
from serve_app.errors import BadRequest, Conflict, Invalid, Unavailable
from serve_app.records import threads as thread_records
from serve_app.responses import loads


def _checkpoint(config: dict | None) -> dict | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    out = {"thread_id": conf.get("thread_id"), "checkpoint_ns": conf.get("checkpoint_ns", ""),
           "checkpoint_id": conf.get("checkpoint_id")}
    if conf.get("checkpoint_map"):
        out["checkpoint_map"] = conf["checkpoint_map"]
    return out


def _interrupt(value: Any) -> dict:
    return {"value": getattr(value, "value", None), "id": getattr(value, "id", None)}


def snapshot_json(snapshot: StateSnapshot) -> dict:
    tasks = []
    for task in snapshot.tasks:
        state = task.state
        tasks.append({
            "id": task.id, "name": task.name, "path": list(task.path),
            "error": repr(task.error) if task.error else None,
            "interrupts": [_interrupt(i) for i in task.interrupts],
            "checkpoint": _checkpoint(state) if isinstance(state, dict) else None,
            "state": snapshot_json(state) if isinstance(state, StateSnapshot) else None,
            "result": getattr(task, "result", None),
        })
    checkpoint = _checkpoint(snapshot.config)
    parent = _checkpoint(snapshot.parent_config)
    body = {
        "values": snapshot.values, "next": list(snapshot.next), "tasks": tasks,
        "metadata": snapshot.metadata, "created_at": snapshot.created_at,
        "checkpoint": checkpoint, "parent_checkpoint": parent,
        "interrupts": [_interrupt(i) for i in getattr(snapshot, "interrupts", ())],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }
    return loads(dumps(body))


def empty_state(thread_id: str) -> dict:
    return {"values": {}, "next": [], "tasks": [], "metadata": {}, "created_at": None,
            "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
            "parent_checkpoint": None, "interrupts": [], "checkpoint_id": None, "parent_checkpoint_id": None}


async def _graph_for(context: AppContext, thread: dict):
    graph_id = (thread["metadata"] or {}).get("graph_id")
    if not graph_id:
        return None
    try:
        return await context.graphs.build(graph_id, {}, checkpointer=context.saver)
    except GraphUnavailableError as exc:
        raise Unavailable(str(exc)) from None


def _config(thread_id: str, checkpoint: dict | None = None) -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    for key, value in (checkpoint or {}).items():
        if value is not None and key != "thread_id":
            configurable[key] = value
    return {"configurable": configurable}


async def get_state(context: AppContext, thread_id: str, owner: str | None, *, checkpoint: dict | None = None,
                    subgraphs: bool = False) -> dict:
    pool = await context.ready()
    thread = await thread_records.get(pool, thread_id, owner)
    graph = await _graph_for(context, thread)
    if graph is None:
        return empty_state(thread_id)
    snapshot = await graph.aget_state(_config(thread_id, checkpoint), subgraphs=subgraphs)
    if not snapshot.config and not snapshot.values:
        return empty_state(thread_id)
    return snapshot_json(snapshot)


async def history(context: AppContext, thread_id: str, owner: str | None, *, limit: int,
                  before: dict | None, metadata: dict | None, checkpoint: dict | None) -> list[dict]:
    pool = await context.ready()
    thread = await thread_records.get(pool, thread_id, owner)
    graph = await _graph_for(context, thread)
    if graph is None:
        return []
    before_config = _config(thread_id, before) if before else None
    return [snapshot_json(s) async for s in graph.aget_state_history(
        _config(thread_id, checkpoint), limit=limit, before=before_config, filter=metadata or None)]


async def update_state(context: AppContext, thread_id: str, owner: str | None, *, values: Any,
                       as_node: str | None, checkpoint: dict | None) -> dict:
    pool = await context.ready()
    thread = await thread_records.get(pool, thread_id, owner)
    if thread["status"] == "busy":
        raise Conflict(f"Thread {thread_id} is busy with a run; update its state when the run ends")
    graph = await _graph_for(context, thread)
    if graph is None:
        raise BadRequest(f"Thread {thread_id} has no graph yet: run it once, or create it with a graph_id")
    try:
        # As the official server: the update's checkpoint metadata names its thread and graph.
        update_config = _config(thread_id, checkpoint)
        update_config["configurable"]["graph_id"] = thread["metadata"]["graph_id"]
        update_config["metadata"] = {"thread_id": thread_id, "graph_id": thread["metadata"]["graph_id"]}
        config = await graph.aupdate_state(update_config, values, as_node=as_node)
    except (ValueError, KeyError, TypeError, InvalidUpdateError) as exc:
        raise Invalid(f"cannot update state: {exc}") from None
    snapshot = await graph.aget_state(_config(thread_id))
    interrupts = {t.id: [_interrupt(i) for i in t.interrupts] for t in snapshot.tasks if t.interrupts}
    # As the official server: a thread whose state has nodes left to run is interrupted.
    status = "interrupted" if interrupts or snapshot.next else "idle"
    await thread_records.set_state_columns(pool, thread_id, loads(dumps(snapshot.values)), interrupts, status)
    checkpoint = _checkpoint(config)
    return {"checkpoint": checkpoint, "configurable": checkpoint,
            "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None}

