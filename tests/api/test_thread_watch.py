"""The replica's thread watch hub on real Postgres, without Ray: one LISTEN connection, watch
rows kept fresh and removed, and a wake-up only for the thread whose run was inserted."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from quadracode_ray.persistence import open_async_pool
from serve_app.runs import thread_watch
from serve_app.runs.thread_watch import ThreadWatchHub
from tests.polling import eventually


class _Context:
    """What the hub uses of the app's context: a ready pool and the database URL."""

    def __init__(self, pool, url: str) -> None:
        self.pool, self.database_url = pool, url

    async def ready(self):
        return self.pool


async def _rows(url: str) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(
            "SELECT thread_id::text, listener, expires_at FROM qr_thread_watches ORDER BY thread_id")).fetchall()


async def _insert_run(url: str, thread_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("INSERT INTO qr_threads (thread_id) VALUES (%s) ON CONFLICT DO NOTHING", (thread_id,))
        await conn.execute("INSERT INTO qr_runs (run_id, thread_id, assistant_id) VALUES (%s, %s, %s)",
                           (uuid.uuid4(), thread_id, uuid.uuid4()))


async def test_hub_wakes_the_watchers_of_the_notified_thread_only(database_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_watch, "REFRESH_S", 0.3)
    pool = await open_async_pool(database_url, name="test-hub")
    hub = ThreadWatchHub(_Context(pool, database_url))
    watched, other = str(uuid.uuid4()), str(uuid.uuid4())
    wake_a, wake_b, wake_other = asyncio.Event(), asyncio.Event(), asyncio.Event()
    stale = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO qr_thread_watches VALUES (%s, 'gone', now() - interval '1 hour')", (stale,))
    try:
        async with hub.watch(watched, wake_a), hub.watch(watched, wake_b), hub.watch(other, wake_other):
            assert hub.listening
            first = await _rows(database_url)
            assert sorted(row[0] for row in first if row[1] == hub.listener) == sorted([watched, other])
            for wake in (wake_a, wake_b, wake_other):
                wake.clear()
            await _insert_run(database_url, watched)
            await asyncio.wait_for(asyncio.gather(wake_a.wait(), wake_b.wait()), 5)
            assert not wake_other.is_set()
            # Refreshed while watched; a replica gone for long loses its rows.
            await eventually(lambda: _later_expiry(database_url, first), what="the watch rows refreshed")
            assert stale not in [row[0] for row in await _rows(database_url)]
        await eventually(lambda: _no_rows(database_url), what="the watch rows removed")
        # Nobody watches: the connection closes at the next refresh tick.
        await eventually(lambda: _done(hub), what="the LISTEN connection closed")
        assert not hub.listening
    finally:
        await pool.close()


async def _later_expiry(url: str, before: list[tuple]) -> bool:
    expiry = {row[0]: row[2] for row in before}
    now = await _rows(url)
    return all(row[2] > expiry[row[0]] for row in now if row[0] in expiry and row[1] != "gone")


async def _no_rows(url: str) -> bool:
    return not await _rows(url)


async def _done(hub: ThreadWatchHub) -> bool:
    return hub._task is not None and hub._task.done()
