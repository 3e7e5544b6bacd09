"""What a run host does once a run ended: record its outcome in the queue (which frees its thread
and names the run queued behind it), undo a rolled-back run's checkpoints, call its webhook.

Plain functions of the host's pool, checkpointer and graph registry (no host state), so the
``RunHost`` in ``runs/host.py`` keeps only claiming, executing, streaming and cancelling.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from quadracode_ray.persistence.checkpoints import ApiCheckpointSaver
from runs import queue
from runs.execution import RunOutcome, run_config
from runs.graph_registry import GraphRegistry
from runs.stream import dumps

log = logging.getLogger(__name__)


async def record_outcome(pool, saver: ApiCheckpointSaver, run: dict, outcome: RunOutcome) -> queue.NextRun | None:
    """Record the end of a run that finished (success, error or interrupt): the run queued next
    on its thread, if any. A temporary run's thread goes with it."""
    temporary = bool(run["kwargs"].get("temporary"))
    if temporary:
        await saver.adelete_thread(str(run["thread_id"]))
    else:
        await record_usage(pool, str(run["thread_id"]), outcome.values)
    return await queue.finish(
        pool, str(run["run_id"]), outcome.status, thread_outcome=outcome.thread_outcome,
        error=outcome.error, values=_jsonable(outcome.values), interrupts=_jsonable(outcome.interrupts),
        delete_thread=temporary,
    )


async def record_cancel(pool, saver: ApiCheckpointSaver, registry: GraphRegistry, run: dict,
                        action: str) -> queue.NextRun | None:
    """Record a cancelled run as ``interrupted`` with the thread's state as the cancel left it;
    ``rollback`` first deletes the checkpoints the run wrote, and then the run itself."""
    config = run_config(run)
    thread_id = str(run["thread_id"])
    if action == "rollback":
        await _delete_run_checkpoints(pool, thread_id, str(run["run_id"]))
    values, interrupts = None, {}
    try:
        graph = await registry.build(run["kwargs"]["graph_id"], config, checkpointer=saver)
        state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        values = state.values or None
    except Exception:
        log.exception("run %s: reading state after cancel failed", run["run_id"])
    await record_usage(pool, thread_id, values)
    return await queue.finish(
        pool, str(run["run_id"]), "interrupted", thread_outcome="idle", values=_jsonable(values),
        interrupts=interrupts, delete_run=action == "rollback",
        delete_thread=bool(run["kwargs"].get("temporary")),
    )


async def record_usage(pool, thread_id: str, values: Any) -> None:
    """Copy what the thread spent on models (the built-in graphs' ``spent``, see
    ``quadracode_ray.graphs.budgets``) into its metadata as ``usage``, before the run is seen
    finished; a graph without ``spent`` leaves the metadata as it is."""
    spent = values.get("spent") if isinstance(values, dict) else None
    if not isinstance(spent, dict):
        return
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE qr_threads SET metadata = metadata || jsonb_build_object('usage', %s::jsonb) "
            "WHERE thread_id = %s", (orjson.dumps(spent).decode(), thread_id))


async def call_webhook(pool, run: dict, status: str) -> None:
    """POST the run (its row, status and the thread's values) to its webhook; a failure is logged."""
    row = await queue.run_status(pool, str(run["run_id"]))
    values = None
    async with pool.connection() as conn:
        cursor = await conn.execute('SELECT "values" FROM qr_threads WHERE thread_id = %s', (run["thread_id"],))
        thread = await cursor.fetchone()
        values = thread["values"] if thread else None
    payload = orjson.loads(dumps({
        **{k: v for k, v in (row or run).items() if k not in ("executor", "available_at", "owner")},
        "status": status, "run_started_at": (row or run).get("started_at"),
        "run_ended_at": (row or run).get("ended_at"), "webhook_sent_at": datetime.now(UTC),
        "values": values,
    }))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await client.post(run["kwargs"]["webhook"], json=payload)
    except httpx.HTTPError as exc:
        log.warning("webhook %s for run %s failed: %s", run["kwargs"]["webhook"], run["run_id"], exc)


async def _delete_run_checkpoints(pool, thread_id: str, run_id: str) -> None:
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND metadata->>'run_id' = %s",
            (thread_id, run_id))
        ids = [r["checkpoint_id"] for r in await cursor.fetchall()]
        if ids:
            await conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = ANY(%s)",
                               (thread_id, ids))
            await conn.execute("DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_id = ANY(%s)",
                               (thread_id, ids))


def _jsonable(value: Any) -> Any:
    return None if value is None else orjson.loads(dumps(value))
