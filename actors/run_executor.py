"""Run-executor actors: execute API runs off the HTTP path and stream their output back.

Each executor is a named, restartable async actor (``run-executor-<db>-<i>`` in namespace
``quadracode``). A replica inserts a run into the durable queue (``qr_runs``) and pushes its
id here with ``submit``: the run starts at once when its thread is free. Output goes into an
in-memory log per run that any replica reads with the streaming generator ``events``.

Recovery: on (re)start an executor puts the runs it was running back in the queue (or marks
them ``error`` once they used up their attempts), and a slow sweep picks up anything a lost
push left behind; the sweep is a safety net, never the way runs normally start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import ray
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.conninfo import make_conninfo

from actors import run_executor_queue as queue
from actors.fabric_clients import fabric_configurable
from actors.run_executor_execute import RunOutcome, execute_run, run_config
from actors.run_executor_graphs import GraphRegistry
from actors.run_executor_stream import END_EVENT, RunStream, batch, dumps
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.persistence.bootstrap import resolve_database_url

log = logging.getLogger(__name__)

# A finished run's events stay in memory this long (for the request that created it, when it
# subscribes late under load); then only its end (the result runs/wait answers) stays, until
# STREAM_RETENTION_S. Resumable runs' events are in Postgres for longer.
STREAM_EVENTS_RETENTION_S = 15.0
STREAM_RETENTION_S = 120.0


def executor_names(settings: Settings, database_url: str) -> list[str]:
    """The pool's actor names; keyed by database so deployments on other databases never mix."""
    key = hashlib.sha1(database_url.encode()).hexdigest()[:10]
    return [f"run-executor-{key}-{i}" for i in range(settings.run_executors)]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class RunExecutor:
    def __init__(self, name: str, settings: Settings, database_url: str, pool_names: list[str]):
        self.name = name
        self.settings = settings
        self.database_url = database_url
        self.pool_names = pool_names
        self.streams: dict[str, RunStream] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.cancel_actions: dict[str, str] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.starting: dict[str, asyncio.Event] = {}  # runs being claimed right now
        self.start_again: set[str] = set()
        self.slots = asyncio.Semaphore(settings.run_executor_concurrency)
        self.handles: dict[str, Any] = {}
        self._background: set[asyncio.Task] = set()  # strong refs: asyncio keeps only weak ones
        self._ready = asyncio.get_running_loop().create_task(self._start_up())
        self._sweeper: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def _start_up(self) -> None:
        self.pool = await open_async_pool(self.database_url, min_size=4,
                                          max_size=max(4, self.settings.db_pool_max_size), name=self.name)
        # Checkpoints are written without waiting for the WAL flush: the run queue is the source
        # of truth, and the synchronous commit that records a run's end flushes every checkpoint
        # written before it. An OS crash mid-run loses at most the last checkpoints of a run
        # that is still 'running', which recovery retries from the last durable one.
        self.checkpoint_pool = await open_async_pool(
            make_conninfo(self.database_url, options="-c synchronous_commit=off"), min_size=2,
            max_size=max(4, self.settings.db_pool_max_size), name=f"{self.name}-checkpoints")
        self.saver = AsyncPostgresSaver(self.checkpoint_pool)
        self.store = AsyncPostgresStore(self.pool)
        self.registry = GraphRegistry.from_settings(self.settings)
        for run_id in await queue.recover(self.pool, self.name, self.pool_names, self.settings.run_max_attempts):
            self._submit_local(run_id)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def ready(self) -> str:
        await self._ready
        return self.name

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.run_sweep_interval_s)
            try:
                for run_id in await queue.recover_pending(self.pool, self.name, self.pool_names):
                    if run_id not in self.tasks and run_id not in self.timers:
                        self._submit_local(run_id)
            except Exception:  # the sweep is a safety net; it must never die
                log.exception("run queue sweep failed")

    # --- starting runs -----------------------------------------------------------------------------
    async def submit(self, run_id: str) -> None:
        await self._ready
        self._submit_local(run_id)

    def _submit_local(self, run_id: str) -> None:
        self.streams.setdefault(run_id, RunStream(run_id))
        task = asyncio.get_running_loop().create_task(self._try_start(run_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _try_start(self, run_id: str) -> None:
        if run_id in self.tasks:
            return
        if run_id in self.starting:
            # A claim is in flight and may fail on state that has changed since: try again after it.
            self.start_again.add(run_id)
            return
        self.starting[run_id] = started = asyncio.Event()
        try:
            await self._claim_and_start(run_id)
        finally:
            del self.starting[run_id]
            started.set()
            if run_id in self.start_again:
                self.start_again.discard(run_id)
                if run_id not in self.tasks:
                    self._submit_local(run_id)

    async def _claim_and_start(self, run_id: str) -> None:
        await self.slots.acquire()
        try:
            claimed = await queue.claim(self.pool, run_id, self.name)
        except Exception:
            self.slots.release()
            log.exception("claiming run %s failed", run_id)
            return
        if claimed.run is None:
            self.slots.release()
            if claimed.not_before is not None:
                delay = max((claimed.not_before - datetime.now(UTC)).total_seconds(), 0.0)
                self.timers[run_id] = asyncio.get_running_loop().call_later(delay, self._timer_fired, run_id)
            return
        run = claimed.run
        stream = self.streams.get(run_id)
        if stream is None or stream.finished:
            stream = self.streams[run_id] = RunStream(run_id)
        self.tasks[run_id] = asyncio.get_running_loop().create_task(self._execute(run, stream))

    def _timer_fired(self, run_id: str) -> None:
        self.timers.pop(run_id, None)
        self._submit_local(run_id)

    async def _execute(self, run: dict, stream: RunStream) -> None:
        run_id = str(run["run_id"])
        kwargs = run["kwargs"]
        status = "error"
        try:
            try:
                clients = fabric_configurable(kwargs["graph_id"],
                                              self.settings.model_copy(update={"database_url": self.database_url}))
                outcome = await execute_run(run, self.registry, stream, checkpointer=self.saver, store=self.store,
                                            clients=clients)
                status = outcome.status
                next_run = await self._record(run, outcome)
                await stream.publish(END_EVENT, dumps({"status": status, "output": outcome.output}))
            except asyncio.CancelledError:
                action = self.cancel_actions.pop(run_id, "interrupt")
                status = "interrupted"
                next_run = await self._record_cancel(run, action)
                await stream.publish(END_EVENT, dumps({"status": "interrupted", "output": None}))
            if kwargs.get("resumable"):
                await self._persist_events(run_id, stream)
            await stream.finish()
            if next_run is not None:
                await self._push(next_run)
            if kwargs.get("webhook"):
                await self._call_webhook(run, status)
        except Exception:
            log.exception("run %s: bookkeeping failed", run_id)
            await stream.finish()
        finally:
            self.tasks.pop(run_id, None)
            self.slots.release()
            loop = asyncio.get_running_loop()
            loop.call_later(STREAM_EVENTS_RETENTION_S, stream.keep_only_end)
            loop.call_later(STREAM_RETENTION_S, self._forget, run_id, stream)

    def _forget(self, run_id: str, stream: RunStream) -> None:
        if self.streams.get(run_id) is stream:
            del self.streams[run_id]

    async def _record(self, run: dict, outcome: RunOutcome) -> queue.NextRun | None:
        temporary = bool(run["kwargs"].get("temporary"))
        if temporary:
            await self.saver.adelete_thread(str(run["thread_id"]))
        return await queue.finish(
            self.pool, str(run["run_id"]), outcome.status, thread_outcome=outcome.thread_outcome,
            error=outcome.error, values=_jsonable(outcome.values), interrupts=_jsonable(outcome.interrupts),
            delete_thread=temporary,
        )

    async def _record_cancel(self, run: dict, action: str) -> queue.NextRun | None:
        config = run_config(run)
        thread_id = str(run["thread_id"])
        if action == "rollback":
            await _delete_run_checkpoints(self.pool, thread_id, str(run["run_id"]))
        values, interrupts = None, {}
        try:
            graph = await self.registry.build(run["kwargs"]["graph_id"], config, checkpointer=self.saver)
            state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            values = state.values or None
        except Exception:
            log.exception("run %s: reading state after cancel failed", run["run_id"])
        return await queue.finish(
            self.pool, str(run["run_id"]), "interrupted", thread_outcome="idle", values=_jsonable(values),
            interrupts=interrupts, delete_run=action == "rollback",
            delete_thread=bool(run["kwargs"].get("temporary")),
        )

    async def _push(self, next_run: queue.NextRun) -> None:
        target = next_run.executor or self.name
        if target == self.name:
            self._submit_local(next_run.run_id)
            return
        try:
            handle = self.handles.get(target) or ray.get_actor(target, namespace=NAMESPACE)
            self.handles[target] = handle
            handle.submit.remote(next_run.run_id)
        except ValueError:  # that executor is gone: run it here
            self._submit_local(next_run.run_id)

    async def _persist_events(self, run_id: str, stream: RunStream) -> None:
        rows = [(run_id, e.seq, e.event, e.data) for e in stream.events]
        if not rows:
            return
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO qr_run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING", rows)

    async def _call_webhook(self, run: dict, status: str) -> None:
        row = await queue.run_status(self.pool, str(run["run_id"]))
        values = None
        async with self.pool.connection() as conn:
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

    # --- cancelling ----------------------------------------------------------------------------------
    async def cancel(self, run_id: str, action: str = "interrupt") -> bool:
        """Stop a run this executor holds. Returns False when it is neither running nor pending."""
        await self._ready
        starting = self.starting.get(run_id)
        if starting is not None:  # a claim in flight decides whether there is a task to stop
            await starting.wait()
        task = self.tasks.get(run_id)
        if task is not None:
            self.cancel_actions[run_id] = action
            task.cancel()
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                pass
            return True
        timer = self.timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        cancelled, next_run = await queue.cancel_pending(self.pool, run_id, action)
        stream = self.streams.get(run_id)
        if cancelled and stream is not None and not stream.finished:
            await stream.publish(END_EVENT, dumps({"status": "interrupted", "output": None}))
            await stream.finish()
        if next_run is not None:
            await self._push(next_run)
        return cancelled

    # --- output ------------------------------------------------------------------------------------
    async def events(self, run_id: str, after: int = -1):
        """Streaming generator: batches of (seq, event, data) with seq > after, until the run ends.

        ``after=-2`` means "from now on" (a join without Last-Event-ID).
        """
        await self._ready
        stream = self.streams.get(run_id)
        if stream is None:
            row = await queue.run_status(self.pool, run_id)
            if row is not None and row["status"] in ("pending", "running"):
                stream = self.streams.setdefault(run_id, RunStream(run_id))
                if row["executor"] in (None, self.name) and run_id not in self.tasks:
                    self._submit_local(run_id)
            else:
                yield await self._replay(run_id, row, after)
                return
        if after == -2:
            after = stream.next_seq - 1
        while True:
            items = stream.since(after)
            if items:
                after = items[-1].seq
                yield batch(items)
                if items[-1].event == END_EVENT:
                    return
            elif stream.finished:
                return
            else:
                await stream.wait_beyond(after)

    async def _replay(self, run_id: str, row: dict | None, after: int) -> list[tuple[int, str, bytes]]:
        if row is None:
            return [(0, END_EVENT, dumps({"status": "missing", "output": None}))]
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT seq, event, data FROM qr_run_events WHERE run_id = %s AND seq > %s ORDER BY seq",
                (run_id, after))
            stored = [(r["seq"], r["event"], bytes(r["data"])) for r in await cursor.fetchall()]
        if stored and stored[-1][1] == END_EVENT:
            return stored
        return stored + [(10**9, END_EVENT, dumps({"status": row["status"], "output": None}))]

    async def stats(self) -> dict[str, Any]:
        await self._ready
        return {"name": self.name, "running": len(self.tasks), "streams": len(self.streams),
                "timers": len(self.timers)}


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


def database_url_for(settings: Settings) -> str:
    return resolve_database_url(settings)[0]
