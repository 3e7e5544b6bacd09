"""A thread's tape for the v3 protocol: its runs in creation order, each run's stored events
(``service.run_events``: from its host, or from Postgres for a resumable run, so a replica
or a host that died changes nothing), turned into wire events by a :class:`V3Session`.

The tape is read from the thread's first run each time a stream opens (as the official server
does), and followed after that: a new run of the thread is found at once through the replica's
LISTEN hub (serve_app/runs/thread_watch.py), with a poll as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from runs.stream import END_EVENT
from serve_app.context import AppContext
from serve_app.runs.service import run_events
from serve_app.runs.thread_watch import ThreadWatchHub
from serve_app.runs.v3_session import V3Session

POLL_LISTENING_S = 5.0
POLL_S = 0.5
_RUN_COLUMNS = "run_id, thread_id, executor, status, attempt, kwargs, assistant_id"


async def _runs(context: AppContext, thread_id: str) -> list[dict]:
    pool = await context.ready()
    async with pool.connection() as conn:
        return await (await conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM qr_runs WHERE thread_id = %s ORDER BY created_at, run_id",
            (thread_id,))).fetchall()


async def _thread_interrupted(context: AppContext, thread_id: str) -> bool:
    pool = await context.ready()
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT status, interrupts FROM qr_threads WHERE thread_id = %s",
                                        (thread_id,))).fetchone()
    return bool(row and row["status"] == "interrupted" and row["interrupts"])


async def thread_tape(context: AppContext, hub: ThreadWatchHub, thread_id: str,
                      session: V3Session | None = None) -> AsyncIterator[list[dict]]:
    """The thread's wire events, batch by batch, from its first run on; never ends by itself."""
    session = session or V3Session()
    seen: set[str] = set()
    wake = asyncio.Event()
    async with hub.watch(thread_id, wake):
        while True:
            wake.clear()
            runs = [run for run in await _runs(context, thread_id) if str(run["run_id"]) not in seen]
            for run in runs:
                run_id = str(run["run_id"])
                seen.add(run_id)
                yield session.start_run(run_id, (run.get("kwargs") or {}).get("graph_id") or "root")
                ended = False
                async for items in run_events(context, run, after=-1):
                    batch: list[dict] = []
                    for seq, event, data in items:
                        if event == END_EVENT:
                            end = orjson.loads(data)
                            output = end.get("output") if isinstance(end, dict) else None
                            status = (end or {}).get("status") or "success"
                            interrupted = status == "success" and await _thread_interrupted(context, thread_id)
                            batch += session.end_run(status, output, interrupted)
                            ended = True
                        else:
                            batch += session.ingest(event, data, f"{run_id}:{seq}")
                    if batch:
                        yield batch
                if not ended:
                    yield session.end_run("error", None, False)
            if runs:
                continue  # a run may have been created while these were read
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_LISTENING_S if hub.listening else POLL_S)
