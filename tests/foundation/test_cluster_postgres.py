"""The cluster's Postgres (`quadracode-ray up --cluster-postgres` on a `ray up` head): the embedded
server listening on TCP, reachable with the generated password only, idempotent, data kept."""

from __future__ import annotations

import shutil
import stat
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from quadracode_ray.config import Settings
from quadracode_ray.persistence.cluster_postgres import (
    start_cluster_postgres,
    stop_cluster_postgres,
)
from tests.conftest import free_port


@pytest.fixture
def settings():
    root = Path(tempfile.mkdtemp(prefix="qr-cpg-"))  # short: the server's socket lives in it
    settings = Settings(_env_file=None, data_dir=root, cluster_postgres_port=free_port(),
                        cluster_postgres_listen="127.0.0.1")
    yield settings
    stop_cluster_postgres(settings)
    shutil.rmtree(root, ignore_errors=True)


def test_the_cluster_postgres_takes_tcp_logins_with_its_password_only_and_keeps_its_data(settings):
    url = start_cluster_postgres(settings, "127.0.0.1")
    assert url.startswith("postgresql://quadracode:") and url.endswith(f"@127.0.0.1:{settings.cluster_postgres_port}/quadracode")
    password_file = settings.data_dir / "cluster-postgres.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(password_file.read_text().strip(), "wrong"), connect_timeout=10)

    assert start_cluster_postgres(settings, "127.0.0.1") == url  # idempotent: same password, same server
    assert stop_cluster_postgres(settings) and not stop_cluster_postgres(settings)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)

    assert start_cluster_postgres(settings, "127.0.0.1") == url  # started again on its data
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchone()[0] == "still here"


def test_a_configured_password_is_used_and_not_stored(settings):
    settings = Settings(_env_file=None, data_dir=settings.data_dir, cluster_postgres_port=settings.cluster_postgres_port,
                        cluster_postgres_listen="127.0.0.1", cluster_postgres_password="s3cret/with:chars")
    url = start_cluster_postgres(settings, "127.0.0.1")
    assert "s3cret%2Fwith%3Achars@" in url
    assert not (settings.data_dir / "cluster-postgres.password").exists()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "quadracode"


class _PastPostgres(Exception):
    """Raised by the report once `up` has migrated Postgres: the rest (Ray, Serve) is not this test's."""


def test_an_external_database_url_is_used_instead_of_the_cluster_postgres(settings, pg_admin_url, monkeypatch):
    """cluster.yaml's head runs `quadracode-ray up --cluster-postgres`; with QUADRACODE_DATABASE_URL
    set there, that Postgres is migrated and used, and no cluster server is started."""
    from quadracode_ray.launcher import system
    from quadracode_ray.persistence.embedded import EmbeddedPostgres

    name = f"t_external_{uuid.uuid4().hex[:8]}"
    admin = EmbeddedPostgres.url_for(pg_admin_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    external = EmbeddedPostgres.url_for(pg_admin_url, name)
    settings = settings.model_copy(update={"database_url": external, "ray_address": "127.0.0.1:6379"})
    lines: list[str] = []
    # `up` joins the cluster before it migrates (the two overlap on a local head); no cluster runs
    # here, and joining one is test_ray_up's, so the join answers a dashboard address at once.
    monkeypatch.setattr(system, "_dashboard_of", lambda address: "http://127.0.0.1:8265")

    def report(line: str) -> None:
        lines.append(line)
        if line.startswith("✓ Postgres: migrations"):
            raise _PastPostgres

    try:
        with pytest.raises(_PastPostgres):
            system.up(settings, report=report, cluster_postgres=True)
        assert not [line for line in lines if "cluster's server" in line]
        assert not (settings.data_dir / "cluster-postgres").exists()
        assert not (settings.data_dir / "cluster-postgres.password").exists()
        with psycopg.connect(external) as conn:  # the external database got the tables
            assert conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL").fetchone()[0]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
