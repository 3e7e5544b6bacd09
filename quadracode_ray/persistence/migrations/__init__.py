"""Versioned, idempotent schema migrations.

Migrations are SQL files in a folder per component (``core/0001_initial.sql``,
``events/0001_event_log.sql``, ...), so that parts of the system grow their schemas
independently. Each file is applied once, in version order, inside its own transaction,
under a Postgres advisory lock, so many processes may start at once. An applied file
must never change: its checksum is recorded and a changed file is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_ROOT = Path(__file__).parent
# Arbitrary, fixed: the advisory lock every migrating process takes.
ADVISORY_LOCK_KEY = 0x51_52_4D_49_47  # "QRMIG"
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration folder is malformed or an applied migration was edited afterwards."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(root: Path = MIGRATIONS_ROOT) -> list[Migration]:
    """Every migration under ``root``: core first, then the other components by name."""
    found: list[Migration] = []
    components = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")),
                        key=lambda p: (p.name != "core", p.name))
    for folder in components:
        versions: set[int] = set()
        for file in sorted(folder.glob("*.sql")):
            match = _NAME.match(file.name)
            if not match:
                raise MigrationError(f"{file}: migration files are named NNNN_lower_snake.sql")
            version = int(match["version"])
            if version in versions:
                raise MigrationError(f"{folder.name}: version {version} appears twice")
            versions.add(version)
            found.append(Migration(folder.name, version, match["name"], file.read_text()))
        if versions and sorted(versions) != list(range(1, len(versions) + 1)):
            raise MigrationError(f"{folder.name}: versions must run 1, 2, 3, ... without gaps")
    return found


_LEDGER = """
CREATE TABLE IF NOT EXISTS qr_schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


def apply_migrations(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is missing; return the migrations applied by this call."""
    migrations = discover() if migrations is None else migrations
    applied_now: list[Migration] = []
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("apply_migrations needs an idle connection (each migration is its own transaction)")
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        conn.execute(_LEDGER)
        done = {
            (row[0], row[1]): row[2]
            for row in conn.execute("SELECT component, version, checksum FROM qr_schema_migrations")
        }
        for migration in migrations:
            key = (migration.component, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.component}/{migration.version:04d}_{migration.name} was "
                        "changed after it was applied; add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO qr_schema_migrations (component, version, name, checksum) VALUES (%s, %s, %s, %s)",
                    (migration.component, migration.version, migration.name, migration.checksum),
                )
            applied_now.append(migration)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now


def applied_migrations(conn: psycopg.Connection) -> list[tuple[str, int, str]]:
    """(component, version, name) of every applied migration, in order of application."""
    exists = conn.execute("SELECT to_regclass('qr_schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    rows = conn.execute(
        "SELECT component, version, name FROM qr_schema_migrations ORDER BY applied_at, component, version"
    )
    return [tuple(row) for row in rows]
