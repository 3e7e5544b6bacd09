"""Make the database ready: resolve its URL, apply migrations, set up LangGraph's tables."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import psycopg

from quadracode_ray import __version__
from quadracode_ray.config import Settings
from quadracode_ray.persistence.embedded import EmbeddedPostgres
from quadracode_ray.persistence.migrations import ADVISORY_LOCK_KEY, apply_migrations


@dataclass
class DatabaseInfo:
    url: str
    embedded: bool
    applied: list[str] = field(default_factory=list)


def resolve_database_url(settings: Settings) -> tuple[str, bool]:
    """The configured URL, or the embedded server's (started if needed). Returns (url, embedded)."""
    if settings.database_url:
        return settings.database_url, False
    return EmbeddedPostgres(settings.embedded_pgdata).start(), True


def setup_langgraph(url: str) -> None:
    """Create LangGraph's checkpoint and store tables (their own idempotent migrations)."""
    # Imported here: LangGraph with langchain-core is ~1 s of imports that `quadracode-ray down`
    # and `status` (which import this package) do not need.
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    with psycopg.connect(url, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY + 1,))
        try:
            with PostgresSaver.from_conn_string(url) as saver:
                saver.setup()
            with PostgresStore.from_conn_string(url) as store:
                store.setup()
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY + 1,))


def prepare_database(settings: Settings, *, record_start: str | None = None) -> DatabaseInfo:
    """Everything the system needs of Postgres before it starts, idempotently.

    ``record_start``: when given (the Ray address, or "" when unknown), a row is added to
    ``qr_system_starts`` so the history of starts is kept in the database itself.
    """
    url, embedded = resolve_database_url(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        applied = apply_migrations(conn)
        if record_start is not None:
            _record_start(conn, record_start)
    setup_langgraph(url)
    return DatabaseInfo(url=url, embedded=embedded,
                        applied=[f"{m.component}/{m.version:04d}_{m.name}" for m in applied])


def record_system_start(url: str, ray_address: str) -> None:
    """Add this start to ``qr_system_starts`` of a database prepare_database already made ready."""
    with psycopg.connect(url, autocommit=True) as conn:
        _record_start(conn, ray_address)


def _record_start(conn: psycopg.Connection, ray_address: str) -> None:
    conn.execute("INSERT INTO qr_system_starts (version, hostname, ray_address) VALUES (%s, %s, %s)",
                 (__version__, socket.gethostname(), ray_address or None))
