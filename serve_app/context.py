"""Per-replica resources the routes share: settings, the database pool, graphs, executors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool

from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.persistence.bootstrap import resolve_database_url
from runs.graph_registry import GraphRegistry

log = logging.getLogger(__name__)


class AppContext:
    """Opened lazily on first use, so a replica starts even while Postgres is still coming up."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: AsyncConnectionPool | None = None
        self._lock = asyncio.Lock()
        self._ready_lock = asyncio.Lock()
        self._ready = False
        self.database_url: str | None = None
        self.graphs = GraphRegistry.from_settings(settings)
        self.saver: Any = None
        self.executors: Any = None
        self._warm_up: asyncio.Task | None = None

    async def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    url, _ = await asyncio.to_thread(resolve_database_url, self.settings)
                    self.database_url = url
                    self._pool = await open_async_pool(
                        url,
                        min_size=self.settings.db_pool_min_size,
                        max_size=self.settings.db_pool_max_size,
                        name="serve-api",
                        # a request waits this long for the database before its 503 (Retry-After)
                        wait_timeout_s=10.0,
                    )
        return self._pool

    async def ready(self) -> AsyncConnectionPool:
        """The pool, with the graph assistants in place and the run executors started."""
        pool = await self.pool()
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    from quadracode_ray.persistence.checkpoints import ApiCheckpointSaver
                    from serve_app.executors import ExecutorPool
                    from serve_app.records.assistants import ensure_graph_assistants

                    self.saver = ApiCheckpointSaver(pool)  # the run hosts' saver: same metadata
                    await ensure_graph_assistants(pool, self.graphs.ids())
                    self.executors = ExecutorPool(self.settings, self.database_url or "")
                    await self.executors.start()
                    self._ready = True
        return pool

    def start_warm_up(self) -> asyncio.Task:
        """``warm_up`` as a task of the running loop, started once (idempotent)."""
        if self._warm_up is None:
            self._warm_up = asyncio.get_running_loop().create_task(self.warm_up())
        return self._warm_up

    async def warm_up(self, retry_every_s: float = 5.0) -> None:
        """``ready()`` in the background until it succeeds (Postgres may still be starting)."""
        while True:
            try:
                await self.ready()
                return
            except Exception:
                log.warning("API warm-up failed; retrying in %.0f s", retry_every_s, exc_info=True)
                await asyncio.sleep(retry_every_s)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
