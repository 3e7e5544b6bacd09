"""Connection pools with the connection settings LangGraph's Postgres savers require."""

from __future__ import annotations

import select
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

# LangGraph's savers need autocommit and dict rows. prepare_threshold=0 prepares every statement
# at its first use (psycopg; None would never prepare), as LangGraph's docs configure their savers:
# repeated statements skip parsing. Behind a transaction-pooling proxy such as PgBouncer, that
# needs PgBouncer >= 1.21 with max_prepared_statements set.
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


def open_sync_pool(url: str, *, min_size: int = 1, max_size: int = 10, name: str = "quadracode") -> ConnectionPool:
    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, kwargs=CONNECTION_KWARGS,
                          name=name, open=False)
    pool.open(wait=True, timeout=30)
    return pool


async def check_if_signalled(conn: AsyncConnection) -> None:
    """The pool's check of a connection before it is handed out, without a round trip when the
    server has said nothing. An idle connection's socket is readable only when the server sent
    something: its end (Postgres stopped or restarted, the backend terminated: an error message
    and EOF) or a notice. Only then is the connection checked with a query (which raises if it is
    gone, and the pool replaces it). A round trip per checkout was about 8 per ``runs.wait``: 2
    in the API replica, the rest in the run executor, whose checkpointer takes a connection per
    read and write."""
    if conn.closed or conn.broken:
        raise ConnectionError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


async def open_async_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, name: str = "quadracode", wait_timeout_s: float = 30.0,
) -> AsyncConnectionPool:
    """``wait_timeout_s``: longest a caller waits for a connection (PoolTimeout past it). Each
    connection is checked before it is handed out (``check_if_signalled``), so after a restart
    of Postgres the pool's broken connections are replaced instead of failing one request each."""
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, kwargs=CONNECTION_KWARGS,
                               name=name, open=False, timeout=wait_timeout_s, check=check_if_signalled)
    await pool.open(wait=True, timeout=30)
    return pool
