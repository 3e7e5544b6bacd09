"""Session-wide real parts for the tests: one Ray cluster, one embedded Postgres, Docker.

- ``ray_cluster``: one local Ray instance for the whole session (starting Ray costs seconds).
- ``pg_admin_url`` / ``database_url``: one embedded Postgres per session; every test module
  gets a fresh database cloned from a migrated template, so modules never see each other's rows.
- ``docker_client``: the engine and the workspace image. Missing Docker FAILS the tests that
  need it; it never skips them (run scripts/provision-docker.sh first).
- ``serve_http_port``: Ray Serve started once on a free port.

Tests are marked automatically by the fixtures they use (``docker``, ``ray``, ``postgres``,
``serve``), so ``pytest -m "not docker"`` works without hand-written marks.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.persistence.embedded import EmbeddedPostgres
from quadracode_ray.serve_ingress import ingress_env

WORKSPACE_IMAGE = os.environ.get("QUADRACODE_WORKSPACE_IMAGE", "quadracode-workspace:latest")
_MARK_BY_FIXTURE = {"docker_client": "docker", "ray_cluster": "ray", "database_url": "postgres",
                    "pg_admin_url": "postgres", "serve_http_port": "serve"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, mark in _MARK_BY_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- settings -------------------------------------------------------------------------------
@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings that ignore the developer's .env and environment, with a private data folder."""

    def make(**overrides: object) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        return Settings(_env_file=None, **overrides)

    return make


# --- Postgres --------------------------------------------------------------------------------
TEMPLATE_DB = "qr_test_template"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """An embedded Postgres for the session, with a migrated template database."""
    from quadracode_ray.persistence.bootstrap import prepare_database

    # Short path: the server's unix socket lives in this folder (107-byte limit).
    root = Path(tempfile.mkdtemp(prefix="qr-pg-"))
    server = EmbeddedPostgres(root / "data", database=TEMPLATE_DB)
    template_url = server.start()
    prepare_database(Settings(_env_file=None, database_url=template_url, data_dir=root))
    yield template_url
    server.stop()


@contextlib.contextmanager
def new_database(pg_admin_url: str, prefix: str, *, template: str | None = TEMPLATE_DB,
                 drop: bool = True) -> Iterator[str]:
    """A new database of the session's server (a copy of the migrated template, or blank with
    ``template=None``), dropped afterwards unless ``drop`` is false; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = EmbeddedPostgres.url_for(pg_admin_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield EmbeddedPostgres.url_for(pg_admin_url, name)
    finally:
        if drop:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, fully migrated database for this test module."""
    module = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:30]
    with new_database(pg_admin_url, f"t_{module}") as url:
        yield url


# --- Ray ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance for the session, in the system's namespace. QUADRACODE_TEST_RAY_ADDRESS
    joins a running Ray instead (one of yours, e.g. ``python -m tests.reliability.rig``'s, with
    QUADRACODE_TEST_SERVE_PORT naming its Serve port): a quicker loop, nothing started or stopped."""
    import ray

    joined = os.environ.get("QUADRACODE_TEST_RAY_ADDRESS")
    if joined:
        ray.init(address=joined, namespace=NAMESPACE, logging_level="WARNING")
        yield
        ray.shutdown()
        return

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Actors' metrics reach the node's metrics agent every second here (Ray's default: 10 s),
        # so tests of /metrics wait for them briefly. Set in the environment, not _system_config,
        # so that every process of the cluster (the metrics agent too) counts with the same interval.
        os.environ["RAY_metrics_report_interval_ms"] = "1000"
        # The API's ingress (the serve_ingress setting), as `quadracode-ray up` gives its Ray head;
        # QUADRACODE_SERVE_INGRESS=haproxy|proxy picks it for a session.
        os.environ.update(ingress_env(os.environ.get("QUADRACODE_SERVE_INGRESS")
                                      or Settings.model_fields["serve_ingress"].default))
        # On a machine loaded by parallel test sessions, the node's metrics agent can start slower
        # than the raylet waits for it (a fixed ~30 s in Ray), and the start fails: try again.
        with _free_agent_ports():
            for attempt in range(3):
                try:
                    ray.init(address="local", namespace=NAMESPACE, num_cpus=8, include_dashboard=False,
                             logging_level="WARNING", log_to_driver=True)
                    break
                except Exception as exc:
                    if attempt == 2 or "timed out during startup" not in str(exc):
                        raise
                    ray.shutdown()
    yield
    ray.shutdown()


NO_AGENT_WAIT = "QUADRACODE_TEST_RAY_NO_AGENT_WAIT"


@contextlib.contextmanager
def _free_agent_ports() -> Iterator[None]:
    """Start a local Ray on a machine that other Ray sessions share.

    - The dashboard agent listens on a free port chosen here, not on Ray's fixed 52365 (ray.init
      offers no parameter for it): with the fixed port a second Ray on the machine (another test
      session, a running ``quadracode-ray up``) finds it taken.
    - With QUADRACODE_TEST_RAY_NO_AGENT_WAIT=1, every agent port is given up front (the HTTP
      one, which the raylet reads only from the agent's port file, written beforehand), so the
      raylet does not wait for the agents: it waits a fixed ~15 s per port and aborts past it,
      which a machine loaded by other sessions exceeds while the agent imports. The price: if
      the metrics agent is not up when the raylet first calls it, actors' metrics are not
      exported, so the tests of /metrics' actor figures fail in such a session."""
    from ray._private import node as ray_node
    from ray._private import parameter
    from ray._raylet import DASHBOARD_AGENT_LISTEN_PORT_NAME, persist_port

    no_wait = os.environ.get(NO_AGENT_WAIT) == "1"
    original_init, original_start_raylet = parameter.RayParams.__init__, ray_node.Node.start_raylet
    given = ("dashboard_agent_listen_port", "metrics_agent_port", "metrics_export_port",
             "runtime_env_agent_port") if no_wait else ("dashboard_agent_listen_port",)

    def with_free_ports(self, *args, **kwargs):
        for name in given:
            if kwargs.get(name) is None:  # ray.init passes some of them as None
                kwargs[name] = free_port()
        original_init(self, *args, **kwargs)

    def start_raylet(self, *args, **kwargs):
        if no_wait:
            persist_port(self.get_session_dir_path(), self._node_id, DASHBOARD_AGENT_LISTEN_PORT_NAME,
                         self._ray_params.dashboard_agent_listen_port)
        return original_start_raylet(self, *args, **kwargs)

    parameter.RayParams.__init__, ray_node.Node.start_raylet = with_free_ports, start_raylet
    try:
        yield
    finally:
        parameter.RayParams.__init__, ray_node.Node.start_raylet = original_init, original_start_raylet


@pytest.fixture(scope="session")
def serve_http_port(ray_cluster: None) -> Iterator[int]:
    """Ray Serve running in the session cluster; deploy with serve.run(..., route_prefix=...)."""
    import ray
    from ray import serve

    if os.environ.get("QUADRACODE_TEST_SERVE_PORT"):  # Serve of the joined Ray (see ray_cluster)
        yield int(os.environ["QUADRACODE_TEST_SERVE_PORT"])
        return
    # On a loaded machine Serve's proxy can miss its readiness check and be killed mid-start
    # (ActorDiedError from serve.start): start again, a few times.
    for attempt in range(3):
        port = free_port()
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            break
        except ray.exceptions.RayActorError:
            if attempt == 2:
                raise
            serve.shutdown()
    yield port
    serve.shutdown()


# --- Docker ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine with the workspace image. Fails (never skips) when unavailable."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.fail(f"no Docker engine answers ({exc}); run scripts/provision-docker.sh", pytrace=False)
    try:
        client.images.get(WORKSPACE_IMAGE)
    except ImageNotFound:
        pytest.fail(f"image {WORKSPACE_IMAGE} is missing; run scripts/provision-docker.sh", pytrace=False)
    yield client
    client.close()
