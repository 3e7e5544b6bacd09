"""Following a thread: the events of its active run and of every later run on it, until the
client leaves (``GET /threads/{thread_id}/stream``, the SDK's ``threads.join_stream``).

Each run is followed through the same machinery as a run's own stream (``service.run_events``,
read from the run's host), several at once when runs overlap (an interrupting run starts while
the one it interrupts ends). An agent's delegated result resumes a thread as a new run queued by
the orchestrator (metadata ``source=agent_result``): a watcher sees it as any other new run.

New runs (and thread events) are found at once: a run or thread event inserted for a watched
thread sends a Postgres NOTIFY that the replica's one LISTEN connection turns into a wake-up of
its watchers of that thread (serve_app/runs/thread_watch.py). A poll stays as the safety net:
every ``POLL_SAFETY_S`` while the connection listens, and with backoff from ``POLL_MIN_S`` to
``POLL_MAX_S`` while it does not (not opened yet, lost); a followed run that ends triggers a
read at once too.

``state_update`` events (the official server's, on ``threads.update_state`` and on a thread
created with ``supersteps``: ``{"state": <the thread's state>, "thread_id": ...}``) are rows of
``qr_thread_events``, published by ``publish_state_update``; a watcher asking for that mode gets
the ones created after it joined (or after its ``Last-Event-ID``). As the official server, the
default mode (``run_modes``) does not include them.

Event ids are ``<run created_at in µs>-<k>`` (digits only, the shape the official server's ids
and validation have): ``k`` is 0 for the run's metadata event and the host's event number + 1
after that, so ids grow within a run and from a run to the runs created after it. A
``Last-Event-ID`` resumes after that event: the rest of that run, then every later run of the
thread. Without one, the runs active at the join are followed from their start (as far as
their host holds their events; the official server sends only what comes after the join)
and every run created later from its start. Events of a finished run replay as far as its host
still holds them, or the runs created with ``stream_resumable`` stored them. A thread event's
id is ``<its created_at in µs>-0``. On a resume, each run's events replay in order and the thread
events in order, but the two only roughly interleave (runs are replayed concurrently); a
thread's state is not updated while a run is in flight, so they seldom overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from runs.stream import END_EVENT
from serve_app.context import AppContext
from serve_app.errors import Invalid
from serve_app.runs.service import run_events
from serve_app.runs.sse import frame
from serve_app.runs.thread_watch import ThreadWatchHub

log = logging.getLogger(__name__)

THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0
POLL_SAFETY_S = 5.0  # while the replica LISTENs: NOTIFY wakes a watcher, this only catches a miss
STATE_UPDATE = "state_update"
THREAD_EVENT_RETENTION_S = 86400.0  # a thread's events older than this go when it gets a new one
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


async def publish_state_update(context: AppContext, thread_id: str, state: dict) -> None:
    """The official server's ``state_update`` thread event (after ``threads.update_state``):
    stored, and its insert wakes the thread's watchers (NOTIFY, migration api/0005)."""
    data = orjson.dumps({"state": state, "thread_id": thread_id})
    pool = await context.ready()
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM qr_thread_events WHERE thread_id = %s "
                           "AND created_at < now() - %s * interval '1 second'",
                           (thread_id, THREAD_EVENT_RETENTION_S))
        await conn.execute("INSERT INTO qr_thread_events (thread_id, event, data) VALUES (%s, %s, %s)",
                           (thread_id, STATE_UPDATE, data))


class ThreadFollower:
    """The frames of one watcher: ``frames()`` yields SSE bytes until it is closed."""

    def __init__(self, context: AppContext, hub: ThreadWatchHub, thread_id: str, modes: list[str],
                 position: Position | None):
        self.context = context
        self.hub = hub
        self.thread_id = thread_id
        self.run_modes = "run_modes" in modes
        self.lifecycle = self.run_modes or "lifecycle" in modes
        self.state_updates = STATE_UPDATE in modes  # not part of run_modes, as the official server
        self.position = position
        self.seen: set[str] = set()
        self.seen_events: set[int] = set()
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

    async def _new_thread_events(self, since_us: int, strictly_after: bool) -> list[dict]:
        """Thread events created since ``since_us`` not yet sent, oldest first."""
        pool = await self.context.ready()
        after = ">" if strictly_after else ">="
        async with pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT event_id, event, data, (extract(epoch FROM created_at) * 1000000)::bigint AS created_us "
                "FROM qr_thread_events WHERE thread_id = %s "
                f"AND created_at {after} timestamptz 'epoch' + %s::bigint * interval '1 microsecond' "
                "ORDER BY created_at, event_id", (self.thread_id, since_us))).fetchall()
        return [row for row in rows if row["event_id"] not in self.seen_events]

    def _send_thread_events(self, rows: list[dict]) -> None:
        chunk = []
        for row in rows:
            self.seen_events.add(row["event_id"])
            chunk.append(frame(row["event"], bytes(row["data"]), event_id(int(row["created_us"]), 0)))
        if chunk:
            self.out.put_nowait(b"".join(chunk))

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
        # Watching first, reading second: what is inserted after the first read wakes us.
        async with self.hub.watch(self.thread_id, self.wake):
            if self.position is None:
                since_us, include_active = await self._now_us(), True
            else:
                since_us, include_active = self.position.run_us, False
            # Thread events at the resumed event's own µs were sent before.
            events_strictly_after = self.position is not None and self.position.k is not None
            interval = POLL_MIN_S
            while True:
                self.wake.clear()
                runs = await self._new_runs(since_us, include_active)
                for run in runs:
                    self._start(run)
                found = bool(runs)
                if self.state_updates:
                    events = await self._new_thread_events(since_us, events_strictly_after)
                    self._send_thread_events(events)
                    found = found or bool(events)
                if self.hub.listening:
                    interval = POLL_SAFETY_S
                else:  # no NOTIFY to wake us: poll with backoff
                    interval = POLL_MIN_S if found else min(interval * 2, POLL_MAX_S)
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
