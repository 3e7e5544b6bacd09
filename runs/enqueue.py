"""Queue a run from inside the system (not from an HTTP request): a user message or graph input
given to the orchestrator actor, an agent's result resuming the thread that delegated the task.

The run is an ordinary row of ``qr_runs`` (multitask ``enqueue``: it starts after whatever the
thread is running), so it is listed, joined and streamed like a run a client created, and the
thread's status follows its runs. Queuing is idempotent: the caller derives ``run_id`` from
what caused the run (an envelope id), so a retried delivery queues nothing twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from runs.graph_registry import default_assistant_id
from runs.queue import lock_thread
from runs.settings import RunSettings

RUN_ID_NAMESPACE = uuid.UUID("0b6f4c52-3f2e-4c55-9a57-6a1f1c3e9d21")


def run_id_for(cause: str) -> str:
    """The run id queued for ``cause`` (an envelope id): the same cause, the same run."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, cause))


async def enqueue_run(pool: AsyncConnectionPool, *, run_id: str, thread_id: str, settings: RunSettings,
                      metadata: dict[str, Any], executor: str, create_thread: bool = False) -> bool | None:
    """Queue a run with ``settings`` on a thread, pushed to ``executor`` (the caller then submits
    it there). ``create_thread``: a thread without a ``qr_threads`` row gets one (a thread a
    user message starts); else such a thread queues nothing.

    Returns True when queued, False when ``run_id`` was queued before, None when the thread does
    not exist (and ``create_thread`` is false).
    """
    graph_id = settings.graph_id
    async with pool.connection() as conn, conn.transaction():
        if create_thread:
            await conn.execute(
                "INSERT INTO qr_threads (thread_id, metadata) VALUES (%s, %s) ON CONFLICT (thread_id) DO NOTHING",
                (thread_id, Jsonb({"graph_id": graph_id, "assistant_id": default_assistant_id(graph_id)})))
        thread = await lock_thread(conn, thread_id)
        if thread is None:
            return None
        assistant_id = (thread["metadata"] or {}).get("assistant_id") or default_assistant_id(graph_id)
        settings = await _with_assistant_config(conn, assistant_id, settings)
        run_metadata = {**(thread["metadata"] or {}), **metadata, "graph_id": graph_id,
                        "assistant_id": assistant_id}
        row = await (await conn.execute(
            "INSERT INTO qr_runs (run_id, thread_id, assistant_id, metadata, kwargs, multitask_strategy, executor, "
            "owner) VALUES (%s, %s, %s, %s, %s, 'enqueue', %s, %s) ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
            (run_id, thread_id, assistant_id, Jsonb(run_metadata), Jsonb(settings.row()), executor,
             thread["owner"]))).fetchone()
        if row is None:
            return False
        await conn.execute("UPDATE qr_threads SET status = 'busy', updated_at = now() WHERE thread_id = %s",
                           (thread_id,))
        return True


async def _with_assistant_config(conn: Any, assistant_id: str, settings: RunSettings) -> RunSettings:
    """The thread's assistant's config under the run's own, as for a run a client creates
    (serve_app/runs/service.py): an agent's result resumes a thread with its assistant's prompt,
    model, guardrails and tools, not the graph's defaults."""
    row = await (await conn.execute("SELECT graph_id, config FROM qr_assistants WHERE assistant_id = %s",
                                    (assistant_id,))).fetchone()
    if row is None or row["graph_id"] != settings.graph_id or not row["config"]:
        return settings
    assistant = row["config"]
    configurable = {**(assistant.get("configurable") or {}), **(settings.config.get("configurable") or {})}
    return settings.model_copy(update={"config": {**assistant, **settings.config, "configurable": configurable}})
