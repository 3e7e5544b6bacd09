"""Per-replica resources the routes share: settings and the database pool."""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.persistence.bootstrap import resolve_database_url


class AppContext:
    """Opened lazily on first use, so a replica starts even while Postgres is still coming up."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pool: AsyncConnectionPool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    url, _ = await asyncio.to_thread(resolve_database_url, self.settings)
                    self._pool = await open_async_pool(
                        url,
                        min_size=self.settings.db_pool_min_size,
                        max_size=self.settings.db_pool_max_size,
                        name="serve-api",
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
