"""What wakes a thread watcher at once: one Postgres LISTEN connection per replica, shared by
every watcher of the replica (``GET /threads/{thread_id}/stream``).

A replica writes a row in ``qr_thread_watches`` for each thread it watches (migration
api/0005), refreshed while it watches and expiring when it stops or dies. A trigger on
``qr_runs`` and ``qr_thread_events`` sends ``NOTIFY qr_thread_activity, '<thread_id>'`` for a
watched thread only, whatever inserted the row (this replica, another one, the orchestrator
queuing an agent's result); threads nobody watches cost their runs no NOTIFY. The hub wakes
the watchers of the notified thread, which then read what is new. A NOTIFY is only a wake-up:
the watchers still poll, slowly, as a safety net (a notification sent while the connection
was being re-opened, a run whose insert raced the watch row's first commit).

The connection opens with the first watcher and closes at a refresh tick that finds no
watcher left (so within ``REFRESH_S`` of the last one leaving).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

import psycopg

from serve_app.context import AppContext

log = logging.getLogger(__name__)

CHANNEL = "qr_thread_activity"
WATCH_TTL_S = 60.0  # a watch row not refreshed for this long is ignored (its replica is gone)
REFRESH_S = 20.0
LISTEN_WAIT_S = 2.0  # a watcher waits this long for the connection before it polls fast instead
RECONNECT_MAX_S = 5.0


class ThreadWatchHub:
    """The replica's LISTEN connection and the wake-up events of its watchers, by thread."""

    def __init__(self, context: AppContext):
        self.context = context
        self.listener = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wakers: dict[str, set[asyncio.Event]] = {}
        self.listening = False  # True while LISTEN is active: watchers may poll slowly
        self._listening_changed = asyncio.Event()
        self._rows_lock = asyncio.Lock()  # watch rows are written in the order watchers come and go
        self._task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()

    @contextlib.asynccontextmanager
    async def watch(self, thread_id: str, wake: asyncio.Event) -> AsyncIterator[None]:
        """While inside, ``wake`` is set when a run or thread event of ``thread_id`` is inserted
        (and whenever the connection was lost or re-opened: what came meanwhile must be read)."""
        first = thread_id not in self.wakers
        self.wakers.setdefault(thread_id, set()).add(wake)
        try:
            self._ensure_listening()
            if first:
                try:
                    await self._write_rows([thread_id])
                except Exception:  # the watcher still works, by polling
                    log.warning("thread %s: cannot register its watch", thread_id, exc_info=True)
            if not self.listening:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_listening(), LISTEN_WAIT_S)
            yield
        finally:
            wakers = self.wakers.get(thread_id, set())
            wakers.discard(wake)
            if not wakers:
                self.wakers.pop(thread_id, None)
                # Not awaited here: this runs while the client's stream is being cancelled.
                self._spawn(self._forget_row(thread_id))

    async def _wait_listening(self) -> None:
        while not self.listening:
            self._listening_changed.clear()
            await self._listening_changed.wait()

    def _set_listening(self, value: bool) -> None:
        self.listening = value
        self._listening_changed.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wake_all(self) -> None:
        for wakers in self.wakers.values():
            for wake in wakers:
                wake.set()

    def _ensure_listening(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _write_rows(self, thread_ids: list[str]) -> None:
        pool = await self.context.ready()
        async with self._rows_lock, pool.connection() as conn:
            await conn.execute(
                "INSERT INTO qr_thread_watches (thread_id, listener, expires_at) "
                "SELECT t, %s, now() + %s * interval '1 second' FROM unnest(%s::uuid[]) AS t "
                "ON CONFLICT (thread_id, listener) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                (self.listener, WATCH_TTL_S, thread_ids))

    async def _forget_row(self, thread_id: str) -> None:
        try:
            pool = await self.context.ready()
            async with self._rows_lock:
                if thread_id in self.wakers:
                    return  # watched again meanwhile
                async with pool.connection() as conn:
                    await conn.execute("DELETE FROM qr_thread_watches WHERE thread_id = %s AND listener = %s",
                                       (thread_id, self.listener))
        except Exception:  # the row expires by itself
            log.debug("thread %s: cannot remove its watch", thread_id, exc_info=True)

    async def _refresh(self) -> None:
        """Extend this replica's watch rows, drop the ones it no longer needs, and rows of
        replicas gone for a while."""
        await self._write_rows(list(self.wakers))
        pool = await self.context.ready()
        async with self._rows_lock, pool.connection() as conn:
            await conn.execute(
                "DELETE FROM qr_thread_watches WHERE (listener = %s AND NOT thread_id = ANY(%s::uuid[])) "
                "OR expires_at < now() - %s * interval '1 second'",
                (self.listener, list(self.wakers), WATCH_TTL_S))

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while self.wakers:
            try:
                await self.context.ready()
                assert self.context.database_url is not None
                async with await psycopg.AsyncConnection.connect(self.context.database_url,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._set_listening(True)
                    backoff = 0.1
                    await self._refresh()  # rows may have expired while the connection was down
                    self._wake_all()  # what was inserted before LISTEN took effect is read now
                    while self.wakers:
                        next_refresh = loop.time() + REFRESH_S
                        while (left := next_refresh - loop.time()) > 0:
                            async for note in conn.notifies(timeout=left):
                                for wake in self.wakers.get(note.payload, ()):
                                    wake.set()
                        if self.wakers:
                            await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("thread watch: LISTEN connection failed; retrying in %.1f s", backoff, exc_info=True)
            finally:
                self._set_listening(False)
                self._wake_all()  # polling fast until listening again
            if self.wakers:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
        # Nobody watches: the connection is closed (a new watcher starts a new task).
