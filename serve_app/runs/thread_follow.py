"""Following a thread: the events of its active run and of every later run on it, until the
client leaves (``GET /threads/{thread_id}/stream``, the SDK's ``threads.join_stream``).

Each run is followed through the same machinery as a run's own stream (``service.run_events``,
read from the run's host), several at once when runs overlap (an interrupting run starts while
the one it interrupts ends). An agent's delegated result resumes a thread as a new run queued by
the orchestrator (metadata ``source=agent_result``): a watcher sees it as any other new run.

New runs are found by a bounded poll with backoff (a fallback: no Postgres LISTEN/NOTIFY yet,
since a NOTIFY in ``qr_create_run`` takes Postgres' global notify lock in every run's commit):
the thread's runs are read every ``POLL_MIN_S`` after something happened, doubling to at most
``POLL_MAX_S`` while nothing does; a followed run that ends triggers a read at once.

Event ids are ``<run created_at in µs>-<k>`` (digits only, the shape the official server's ids
and validation have): ``k`` is 0 for the run's metadata event and the host's event number + 1
after that, so ids grow within a run and from a run to the runs created after it. A
``Last-Event-ID`` resumes after that event: the rest of that run, then every later run of the
thread. Without one, the runs active at the join are followed from their start (as far as
their host holds their events; the official server sends only what comes after the join)
and every run created later from its start. Events of a finished run replay as far as its host
still holds them, or the runs created with ``stream_resumable`` stored them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from actors.run_executor_stream import END_EVENT
from serve_app.context import AppContext
from serve_app.errors import Invalid
from serve_app.runs.service import run_events
from serve_app.runs.sse import frame

log = logging.getLogger(__name__)

THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0
_EVENT_ID = re.compile(r"^(\d+)(?:-(\d+|\*))?$")
_RUN_COLUMNS = ("run_id, thread_id, executor, status, attempt, kwargs, "
                "(extract(epoch FROM created_at) * 1000000)::bigint AS created_us")


@dataclass(frozen=True)
class Position:
    """Where a reader is: in the run created at ``run_us``, after its event ``k``
    (``None``: before that run's first event, as a timestamp-only id means)."""

    run_us: int
    k: int | None


def parse_last_event_id(value: str | None) -> Position | None:
    """``None`` (join from now on), ``"-"`` (every run of the thread), or an id this stream sent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value == "-":
        return Position(0, None)
    match = _EVENT_ID.match(value)
    if match is None:
        raise Invalid("Invalid last-event-id: must be a valid Redis stream ID")
    k = match.group(2)
    return Position(int(match.group(1)), None if k in (None, "*") else int(k))


def parse_thread_modes(values: list[str] | None) -> list[str]:
    """The SDK sends ``stream_mode`` (repeated), the official server reads ``stream_modes``
    (comma separated): both come here as a list of raw values."""
    modes = [mode.strip() for value in values or [] for mode in value.split(",") if mode.strip()]
    for mode in modes:
        if mode not in THREAD_STREAM_MODES:
            raise Invalid(f"Invalid stream mode: {mode}")
    return modes or ["run_modes"]


def event_id(run_us: int, k: int) -> str:
    return f"{run_us}-{k}"


class ThreadFollower:
    """The frames of one watcher: ``frames()`` yields SSE bytes until it is closed."""

    def __init__(self, context: AppContext, thread_id: str, modes: list[str], position: Position | None):
        self.context = context
        self.thread_id = thread_id
        self.run_modes = "run_modes" in modes
        self.lifecycle = self.run_modes or "lifecycle" in modes
        # state_update: the official server publishes it when a thread's state is updated by hand;
        # nothing here publishes those yet, so that mode alone streams heartbeats only.
        self.position = position
        self.seen: set[str] = set()
        self.out: asyncio.Queue[bytes] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    async def _now_us(self) -> int:
        pool = await self.context.ready()
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT (extract(epoch FROM now()) * 1000000)::bigint AS now_us")).fetchone()
        return int(row["now_us"])

    async def _new_runs(self, since_us: int, include_active: bool) -> list[dict]:
        """Runs of the thread created at or after ``since_us`` (and, when joining from now on,
        the ones still active), oldest first, not yet followed."""
        pool = await self.context.ready()
        active = " OR status IN ('pending', 'running')" if include_active else ""
        async with pool.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM qr_runs WHERE thread_id = %s "
                # (exact to the µs of created_us, and the (thread_id, created_at) index serves it)
                f"AND (created_at >= timestamptz 'epoch' + %s::bigint * interval '1 microsecond'{active}) "
                "ORDER BY created_at, run_id", (self.thread_id, since_us))).fetchall()
        return [row for row in rows if str(row["run_id"]) not in self.seen]

    def _start(self, run: dict) -> None:
        run_id = str(run["run_id"])
        self.seen.add(run_id)
        if not self.lifecycle:
            return  # state_update alone: no run event goes out
        after, with_metadata = -1, True
        if self.position is not None and run["created_us"] == self.position.run_us and self.position.k is not None:
            after, with_metadata = self.position.k - 1, False  # resume inside the run the id names
        task = asyncio.get_running_loop().create_task(self._follow(run, after, with_metadata))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _follow(self, run: dict, after: int, with_metadata: bool) -> None:
        run_id, run_us = str(run["run_id"]), int(run["created_us"])
        try:
            async for items in run_events(self.context, run, after=after):
                chunk = []
                if with_metadata and self.lifecycle:
                    # Sent with the run's first events, i.e. once it started (a queued run waits
                    # for the one before it): the official server sends it when the run starts.
                    data = orjson.dumps({"run_id": run_id, "attempt": max(run.get("attempt") or 0, 1)})
                    chunk.append(frame("metadata", data, event_id(run_us, 0)))
                    with_metadata = False
                for seq, event, data in items:
                    if event == END_EVENT:
                        if self.lifecycle:
                            done = orjson.dumps({"status": "run_done", "run_id": run_id})
                            chunk.append(frame("metadata", done, event_id(run_us, seq + 1)))
                    elif self.run_modes:
                        chunk.append(frame(event, data, event_id(run_us, seq + 1)))
                if chunk:
                    self.out.put_nowait(b"".join(chunk))
        except asyncio.CancelledError:
            raise
        except Exception:  # one run's host failing for good must not end the watch of the thread
            log.exception("thread %s: following run %s failed", self.thread_id, run_id)
        finally:
            self.wake.set()  # a run ended: the next one of the thread may be queued already

    async def _discover(self) -> None:
        if self.position is None:
            since_us, include_active = await self._now_us(), True
        else:
            since_us, include_active = self.position.run_us, False
        interval = POLL_MIN_S
        while True:
            runs = await self._new_runs(since_us, include_active)
            for run in runs:
                self._start(run)
            interval = POLL_MIN_S if runs else min(interval * 2, POLL_MAX_S)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval)
            if self.wake.is_set():
                interval = POLL_MIN_S

    async def frames(self) -> AsyncIterator[bytes]:
        discover = asyncio.get_running_loop().create_task(self._discover())
        getter: asyncio.Task | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self.out.get())
                done, _ = await asyncio.wait({getter, discover}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    getter = None
                    continue
                discover.result()  # discovery only ends by failing: raise it
        finally:
            for task in [discover, getter, *self.tasks]:
                if task is not None:
                    task.cancel()
            for task in [discover, getter, *self.tasks]:
                if task is not None:
                    with contextlib.suppress(BaseException):
                        await task
