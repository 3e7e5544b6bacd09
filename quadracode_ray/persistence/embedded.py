"""An embedded Postgres (the ``pgserver`` package) under the project's data folder.

It listens on a unix socket only, survives the process that started it (so ``up`` can exit
and ``down`` stop it later), and keeps its data across restarts.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "quadracode"


def _pgserver():
    # platformdirs warns about XDG_RUNTIME_DIR on headless machines; it is harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver


class EmbeddedPostgres:
    """Start, find and stop the embedded server whose data lives in ``pgdata``."""

    def __init__(self, pgdata: Path, database: str = DATABASE_NAME):
        self.pgdata = Path(pgdata).expanduser().resolve()
        self.database = database

    def start(self) -> str:
        """Start the server if it is not running, create the database, return its URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if not self.is_running():
            # pgserver caches one handle per folder and process; another process may have
            # stopped the server since, so a cached handle would point at a dead server.
            self._forget_handle()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = _pgserver().get_server(self.pgdata, cleanup_mode=None)
            admin_url = server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        return self.url_for(admin_url, self.database)

    def is_running(self) -> bool:
        _pgserver()
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        return bool(info is not None and info.is_running())

    def stop(self) -> bool:
        """Stop the server (data kept). Returns False when it was not running."""
        if not self.is_running():
            return False
        _pgserver()
        from pgserver._commands import pg_ctl

        user = "pgserver" if _is_root() else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
        except subprocess.CalledProcessError as exc:  # pragma: no cover - depends on server state
            log.warning("pg_ctl stop failed: %s", exc)
        self._forget_handle()
        return not self.is_running()

    def _forget_handle(self) -> None:
        handle = _pgserver().PostgresServer._instances.pop(self.pgdata, None)
        if handle is not None:  # its atexit hook would look the handle up again
            atexit.unregister(handle._cleanup)

    @staticmethod
    def url_for(admin_url: str, database: str) -> str:
        # pgserver's URL is postgresql://postgres:@/postgres?host=<socket dir>
        head, _, query = admin_url.partition("?")
        base = head.rsplit("/", 1)[0]
        return f"{base}/{quote(database)}" + (f"?{query}" if query else "")


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
