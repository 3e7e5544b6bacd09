"""The cluster's Postgres on the head node: the embedded server, listening on TCP with a password.

``ray up cluster.yaml`` runs ``quadracode-ray up --cluster-postgres`` on the head. Every node's
actors reach this server at ``<head address>:<cluster_postgres_port>`` as role ``quadracode``,
whose password comes from QUADRACODE_CLUSTER_POSTGRES_PASSWORD or is generated once and kept
in ``<data_dir>/cluster-postgres.password`` (mode 0600). Connections over TCP need that password
(scram-sha-256), and nobody else connects over TCP; the local unix socket stays for the head's
own administration. Data lives in
``<data_dir>/cluster-postgres/`` and is kept when the server stops.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from quadracode_ray.config import Settings
from quadracode_ray.persistence.embedded import DATABASE_NAME, EmbeddedPostgres, _is_root, _pgserver

ROLE = "quadracode"
HBA_MARK = "# quadracode-ray cluster access"


def password_file(settings: Settings) -> Path:
    return settings.data_dir / "cluster-postgres.password"


def cluster_pgdata(settings: Settings) -> Path:
    return settings.data_dir / "cluster-postgres"


def cluster_password(settings: Settings) -> str:
    """The configured password, else the stored one, else a new one (stored, 0600)."""
    if settings.cluster_postgres_password is not None:
        return settings.cluster_postgres_password.get_secret_value()
    path = password_file(settings)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def _pg_ctl(args: list[str], pgdata: Path) -> None:
    _pgserver()
    from pgserver._commands import pg_ctl

    pg_ctl(args, pgdata=pgdata, user="pgserver" if _is_root() else None, timeout=60)


def _running_at(pgdata: Path) -> tuple[str, int] | None:
    """(socket folder, port) of the server running on ``pgdata`` (from postmaster.pid), or None."""
    if not EmbeddedPostgres(pgdata).is_running():
        return None
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return lines[4], int(lines[3])


def start_cluster_postgres(settings: Settings, host_address: str) -> str:
    """Start (or find running) the head's Postgres on TCP; return the URL every node uses."""
    server = EmbeddedPostgres(cluster_pgdata(settings))
    password = cluster_password(settings)
    if not (server.pgdata / "PG_VERSION").exists():
        server.start()  # pgserver: initdb, the database, a first start on the unix socket only
    elif _running_at(server.pgdata) is None:
        _pg_ctl(["-w", "-o", f"-k {server.pgdata}", "-l", str(server.pgdata / "log"), "start"], server.pgdata)
    socket_dir, port = _running_at(server.pgdata)
    admin = f"postgresql://postgres:@/postgres?host={quote(socket_dir)}&port={port}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DATABASE_NAME), sql.Identifier(ROLE)))
        conn.execute(sql.SQL("ALTER SYSTEM SET listen_addresses = {}").format(sql.Literal(settings.cluster_postgres_listen)))
        conn.execute(sql.SQL("ALTER SYSTEM SET port = {}").format(sql.Literal(str(settings.cluster_postgres_port))))
        conn.execute("ALTER SYSTEM SET password_encryption = 'scram-sha-256'")
        listening = conn.execute("SHOW listen_addresses").fetchone()[0]
    _allow_password_logins(server.pgdata)
    if listening != settings.cluster_postgres_listen or port != settings.cluster_postgres_port:
        # Started on the socket only (pgserver's first start) or with other settings: restart with ours.
        _pg_ctl(["-w", "-m", "fast", "stop"], server.pgdata)
        server._forget_handle()
        _pg_ctl(["-w", "-o", f"-k {socket_dir}", "-l", str(server.pgdata / "log"), "start"], server.pgdata)
    else:
        _pg_ctl(["reload"], server.pgdata)
    return f"postgresql://{ROLE}:{quote(password, safe='')}@{host_address}:{settings.cluster_postgres_port}/{DATABASE_NAME}"


def _allow_password_logins(pgdata: Path) -> None:
    """pg_hba.conf: the unix socket as initdb left it (the head's own administration) and, over
    TCP, role quadracode on its database with its password only. initdb's ``trust`` lines for
    TCP are dropped: they come first, and the first matching line wins."""
    hba = pgdata / "pg_hba.conf"
    kept = [line for line in hba.read_text().splitlines()
            if not line.split() or line.lstrip().startswith("#") or line.split()[0] == "local"]
    kept = [line for line in kept if line != HBA_MARK]
    text = "\n".join(kept).rstrip() + (
        f"\n{HBA_MARK}\nhost {DATABASE_NAME} {ROLE} 0.0.0.0/0 scram-sha-256\n"
        f"host {DATABASE_NAME} {ROLE} ::/0 scram-sha-256\n")
    hba.write_text(text)


def stop_cluster_postgres(settings: Settings) -> bool:
    """Stop the head's Postgres (data kept); False when it was not running."""
    server = EmbeddedPostgres(cluster_pgdata(settings))
    if not server.is_running():
        return False
    try:
        _pg_ctl(["-w", "-m", "fast", "stop"], server.pgdata)
    except subprocess.CalledProcessError:
        return False
    server._forget_handle()
    return not server.is_running()
