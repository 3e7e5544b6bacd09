"""The servers the API bench runs side by side, each started here and stopped after the run.

- ours: the Serve app as ``build_app`` deploys it, on a local Ray with the API's ingress
  (``--ingress``: HAProxy mode or Serve's Python proxy), on an embedded Postgres;
- Serve's empty-route floor: an empty async FastAPI route deployed as a second app on the same
  Serve (``/floor/ok``): what Ray Serve's ingress alone costs;
- the official dev server: ``langgraph dev`` (in memory), never on port 2024;
- Aegra (``aegra-api`` from PyPI, an Agent Protocol server on Postgres, the durable peer) on the
  same embedded Postgres, its own database; installed into ``.bench/aegra-venv`` by uv on first
  use (its dependencies are not the project's).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRAPH_FILE = ROOT / "bench" / "api_graph.py"
GRAPH_ID = "bench"
AEGRA_VENV = ROOT / ".bench" / "aegra-venv"
# greenlet: Aegra runs SQLAlchemy's asyncio engine, which needs it, and aegra-api 0.6.0 does not declare it.
AEGRA_REQUIREMENTS = ("aegra-api==0.6.0", "greenlet")
FORBIDDEN_PORT = 2024  # a developer's own `langgraph dev`


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != FORBIDDEN_PORT:
            return port


@dataclass
class Peer:
    name: str
    url: str
    health_path: str = "/ok"
    cpu_roots: list[int] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _uv() -> str:
    found = shutil.which("uv") or next((str(p) for p in (ROOT / ".tools" / "bin" / "uv",
                                                           Path("/work/main/.tools/bin/uv")) if p.exists()), None)
    if found is None:
        raise RuntimeError("the Aegra peer is installed with uv: run scripts/dev setup first (it installs uv)")
    return found


def ensure_aegra() -> Path:
    """The Aegra venv's python, installing it on first use."""
    python = AEGRA_VENV / "bin" / "python"
    if not list(AEGRA_VENV.glob("lib/python*/site-packages/greenlet")):
        print(f"installing {' '.join(AEGRA_REQUIREMENTS)} into {AEGRA_VENV} (once)", flush=True)
        if not python.exists():
            subprocess.run([_uv(), "venv", "-q", "--python", "3.11", str(AEGRA_VENV)], check=True)
        subprocess.run([_uv(), "pip", "install", "-q", "--python", str(python), *AEGRA_REQUIREMENTS], check=True)
    return python


def start_official(root: Path) -> Peer:
    """``langgraph dev`` in its own folder (it keeps its state there) on the bench graph."""
    port = free_port()
    workdir = root / "official"
    workdir.mkdir()
    (workdir / "langgraph.json").write_text(json.dumps({"dependencies": ["."],
                                                        "graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}}))
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "LANGSMITH_API_KEY": ""}
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload", "--port", str(port),
         "--config", "langgraph.json"], cwd=workdir, env=env, stdout=open(workdir / "server.log", "wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    return Peer("official", f"http://127.0.0.1:{port}", cpu_roots=[process.pid], process=process)


# Aegra's first migration runs CREATE EXTENSION "uuid-ossp" for uuid_generate_v4(), its ids' default;
# the embedded Postgres (pgserver) ships no contrib extensions, so Aegra exited at start. The same
# function over Postgres' built-in gen_random_uuid() (also a random version-4 UUID) takes its place.
UUID_OSSP = 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";'
UUID_V4 = ("CREATE OR REPLACE FUNCTION public.uuid_generate_v4() RETURNS uuid "
           "LANGUAGE sql VOLATILE AS $$SELECT gen_random_uuid()$$;")  # no quote: it sits in a '...' literal


def _aegra_migrations(workdir: Path) -> None:
    """Aegra's own alembic.ini and migrations copied into its working folder (Aegra takes an
    alembic.ini in its working folder before its bundled one), the extension line replaced."""
    package = next(AEGRA_VENV.glob("lib/python*/site-packages/aegra_api"))
    shutil.copy(package / "alembic.ini", workdir / "alembic.ini")
    shutil.copytree(package / "alembic", workdir / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    patched = [f for f in (workdir / "alembic" / "versions").glob("*.py") if UUID_OSSP in f.read_text()]
    if len(patched) != 1:
        raise RuntimeError(f"Aegra's migrations changed: {len(patched)} of them create uuid-ossp, expected 1")
    patched[0].write_text(patched[0].read_text().replace(UUID_OSSP, UUID_V4))


def start_aegra(root: Path, admin_url: str) -> Peer:
    """Aegra on its own database of the bench's embedded Postgres, with the same pool size as ours."""
    import psycopg

    from quadracode_ray.persistence import EmbeddedPostgres

    python = ensure_aegra()
    with psycopg.connect(EmbeddedPostgres.url_for(admin_url, "postgres"), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "aegra"')
    port = free_port()
    workdir = root / "aegra"
    workdir.mkdir()
    _aegra_migrations(workdir)
    (workdir / "aegra.json").write_text(json.dumps({"graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QUADRACODE_", "RAY_"))},
           "DATABASE_URL": EmbeddedPostgres.url_for(admin_url, "aegra"), "AEGRA_CONFIG": "aegra.json",
           "AUTH_TYPE": "noop", "PORT": str(port), "LOG_LEVEL": "WARNING", "ENV_MODE": "PRODUCTION",
           "SQLALCHEMY_POOL_SIZE": "10", "LANGGRAPH_MAX_POOL_SIZE": "10"}
    process = subprocess.Popen(
        [str(python), "-m", "uvicorn", "aegra_api.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"], cwd=workdir, env=env,
        stdout=open(workdir / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return Peer("aegra", f"http://127.0.0.1:{port}", health_path="/health", cpu_roots=[process.pid], process=process)


def _floor_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict:
        return {"ok": True}

    return app


def start_ray_and_app(settings: dict, ingress: str) -> int:
    """A local Ray with the API's ingress, Serve on a free port and our app deployed on
    ``settings`` (migrations first); returns the HTTP port."""
    from quadracode_ray.serve_ingress import ingress_env

    os.environ.update(ingress_env(ingress))  # before Ray starts: every process of it reads them
    import ray
    from ray import serve

    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import prepare_database
    from serve_app.app import APP_NAME, build_app

    prepare_database(Settings(_env_file=None, **settings))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for attempt in range(3):  # on a loaded machine a node may miss Ray's fixed start deadline
            try:
                ray.init(address="local", namespace=NAMESPACE, num_cpus=max(4, os.cpu_count() or 1),
                         include_dashboard=False, logging_level="ERROR", log_to_driver=False)
                break
            except Exception as exc:
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"settings": settings}), name=APP_NAME, route_prefix="/", blocking=False)
    return port


@contextmanager
def fabric_system(prefix: str, overrides: dict, ingress: str) -> Iterator[tuple[str, Any, int]]:
    """An embedded Postgres, a local Ray with the API's ingress, the actor fabric and the Serve app
    on ``overrides``, all in a temporary folder; yields (API URL, Settings, Postgres postmaster pid)
    and stops and removes everything after, whatever happened."""
    import ray
    from ray import serve

    from actors.bootstrap import shutdown_system
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres
    from sandbox.testing import remove_installation

    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/var/tmp"))
    tag = uuid.uuid4().hex[:8]
    pg = EmbeddedPostgres(root / "pg", database="bench")
    overrides = {**overrides, "database_url": pg.start(), "data_dir": str(root),
                 "actor_name_prefix": f"{prefix[0]}{tag}-", "sandbox_installation_id": f"bench{tag}"}
    postmaster = int(next((root / "pg").rglob("postmaster.pid")).read_text().split()[0])
    settings = Settings(_env_file=None, **overrides)
    try:
        port = start_ray_and_app(overrides, ingress)
        yield f"http://127.0.0.1:{port}", settings, postmaster
    finally:
        try:
            if ray.is_initialized():
                shutdown_system(settings)
                serve.shutdown()
        finally:
            ray.shutdown()
            remove_installation(settings.sandbox_installation_id)
            pg.stop()
            shutil.rmtree(root, ignore_errors=True)


def start_ours(root: Path, ingress: str) -> tuple[Peer, Peer, str]:
    """Ours and Serve's empty route on one local Ray; returns (ours, floor, Postgres admin URL).
    Their CPU roots: this process (which started Ray) and Postgres."""
    from ray import serve

    from quadracode_ray.persistence import EmbeddedPostgres

    url = EmbeddedPostgres(root / "pg", database="bench").start()
    settings = {"database_url": url, "data_dir": str(root), "graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}}
    port = start_ray_and_app(settings, ingress)

    @serve.deployment(max_ongoing_requests=1000, logging_config={"enable_access_log": False, "log_level": "WARNING"})
    @serve.ingress(_floor_app())
    class Empty:
        pass

    serve.run(Empty.bind(), name="serve-floor", route_prefix="/floor", blocking=False)
    postmaster = int(next((root / "pg").rglob("postmaster.pid")).read_text().split()[0])
    roots = [os.getpid(), postmaster]
    base = f"http://127.0.0.1:{port}"
    return (Peer("ours", base, cpu_roots=roots), Peer("serve floor", f"{base}/floor", cpu_roots=roots), url)


def stop_ours(root: Path) -> None:
    import ray
    from ray import serve

    from quadracode_ray.persistence import EmbeddedPostgres

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()
        EmbeddedPostgres(root / "pg", database="bench").stop()


if __name__ == "__main__":  # `python bench/peers.py aegra`: install the Aegra peer ahead of a run
    if sys.argv[1:] == ["aegra"]:
        print(ensure_aegra())
