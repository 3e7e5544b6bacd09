"""A thread's tape for the v3 protocol: its runs in creation order, each run's stored events
(``service.run_events``: from its host, or from Postgres for a resumable run, so a replica
or a host that died changes nothing), turned into wire events by a :class:`V3Session`.

The tape is read from the thread's first run (as the official server does) by one reader per
thread and replica (``ThreadTapes``), shared by every stream of the replica on that thread: a
new stream gets the history from memory at once, then the live events. A new run of the
thread is found at once through the replica's LISTEN hub (serve_app/runs/thread_watch.py),
with a poll as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson

from runs.stream import END_EVENT
from serve_app.context import AppContext
from serve_app.runs.service import detached, run_events
from serve_app.runs.thread_watch import ThreadWatchHub
from serve_app.runs.v3_session import V3Session

POLL_LISTENING_S = 5.0
POLL_S = 0.5
_RUN_COLUMNS = "run_id, thread_id, executor, status, attempt, kwargs, assistant_id, tape_ordinal"


async def _runs(context: AppContext, thread_id: str) -> list[dict]:
    pool = await context.ready()
    async with pool.connection() as conn:
        return await (await conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM qr_runs WHERE thread_id = %s ORDER BY tape_ordinal, run_id",
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
                yield session.start_run(run_id, (run.get("kwargs") or {}).get("graph_id") or "root",
                                        run["tape_ordinal"])
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


class TapeStopped(RuntimeError):
    """The thread's tape reader stopped: the streams following it end (a client reconnects
    with ``since`` and gets a new reader)."""


class _SharedTape:
    """One reader of a thread's tape for every stream of the replica on that thread: a new
    stream gets the events so far from memory at once, then the live ones."""

    def __init__(self, source: AsyncIterator[list[dict]], session: V3Session):
        self.session = session
        self.events: list[dict] = []
        self.users = 0
        self.failure: BaseException | None = None
        self.changed = asyncio.Condition()
        # Detached from the request that opened it: the reader serves every stream of the
        # thread, and Ray cancels the Ray calls made in a request's context (the executor's
        # event generator here) when that request is cancelled, i.e. when its client leaves.
        self.task = detached(self._read(source))

    async def _read(self, source: AsyncIterator[list[dict]]) -> None:
        failure: BaseException = TapeStopped("the thread's tape reader stopped")
        try:
            async for batch in source:
                if batch:
                    async with self.changed:
                        self.events += batch
                        self.changed.notify_all()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failure = exc
        finally:
            # However the reader ends (a failure, or cancelled), the streams on it end too,
            # never wait on a reader that is gone.
            async with self.changed:
                self.failure = failure
                self.changed.notify_all()

    async def follow(self) -> AsyncIterator[list[dict]]:
        seen = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(lambda seen=seen: len(self.events) > seen or self.failure is not None)
                batch, failure = self.events[seen:], self.failure
            seen += len(batch)
            if batch:
                yield batch
            elif failure is not None:
                raise failure


class ThreadTapes:
    """The replica's shared tapes, by thread; a tape nobody follows for LINGER_S is dropped
    (a reconnecting client within that time gets its history from memory)."""

    LINGER_S = 30.0

    def __init__(self, context: AppContext, hub: ThreadWatchHub):
        self.context = context
        self.hub = hub
        self.tapes: dict[str, _SharedTape] = {}

    @contextlib.asynccontextmanager
    async def open(self, thread_id: str) -> AsyncIterator[_SharedTape]:
        tape = self.tapes.get(thread_id)
        if tape is None or tape.task.done():
            session = V3Session()
            tape = self.tapes[thread_id] = _SharedTape(thread_tape(self.context, self.hub, thread_id, session),
                                                       session)
        tape.users += 1
        try:
            yield tape
        finally:
            tape.users -= 1
            if tape.users == 0:
                asyncio.get_running_loop().call_later(self.LINGER_S, self._drop_if_unused, thread_id, tape)

    def _drop_if_unused(self, thread_id: str, tape: _SharedTape) -> None:
        if tape.users == 0 and self.tapes.get(thread_id) is tape:
            del self.tapes[thread_id]
            tape.task.cancel()
