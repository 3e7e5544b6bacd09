"""Postgres persistence: the embedded server, versioned migrations, pools, LangGraph savers."""

from quadracode_ray.persistence.bootstrap import DatabaseInfo, prepare_database
from quadracode_ray.persistence.embedded import EmbeddedPostgres
from quadracode_ray.persistence.migrations import (
    MigrationError,
    applied_migrations,
    apply_migrations,
)
from quadracode_ray.persistence.pool import open_async_pool, open_sync_pool

__all__ = [
    "DatabaseInfo",
    "EmbeddedPostgres",
    "MigrationError",
    "applied_migrations",
    "apply_migrations",
    "open_async_pool",
    "open_sync_pool",
    "prepare_database",
]
