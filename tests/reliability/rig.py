"""The whole system for the reliability suite, the fuzzer and the soak, on parts of its own.

``start_postgres`` starts an embedded Postgres in its own folder (so a fault test may stop and
restart it: no other test or process uses it); ``deploy`` starts the actor fabric (real graphs,
the scripted model, Docker sandboxes) and the Serve app with the test graphs in a Ray already
connected. ``python -m tests.reliability.rig`` runs the same stack in a Ray of its own until
interrupted, printing the API's address: a target for ``st run`` while fixing what it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from quadracode_ray.config import Settings
from quadracode_ray.persistence.embedded import EmbeddedPostgres
from tests.api.graphs import TEST_GRAPHS
from tests.e2e.conftest import FAST_TIMERS as E2E_TIMERS
from tests.e2e.conftest import REAL_PARTS, SMALL_SANDBOX

FAST_TIMERS = {**E2E_TIMERS, "db_pool_max_size": 8, "run_sweep_interval_s": 1.0}


@dataclass
class Stack:
    url: str
    app_name: str
    settings: Settings
    postgres: EmbeddedPostgres


def start_postgres(root: Path | None = None) -> tuple[EmbeddedPostgres, str]:
    """A private embedded Postgres, migrated; returns it and its database URL."""
    from quadracode_ray.persistence.bootstrap import prepare_database

    root = root or Path(tempfile.mkdtemp(prefix="qr-rel-"))  # short: the socket lives here
    server = EmbeddedPostgres(root / "data", database="reliability")
    url = server.start()
    prepare_database(Settings(_env_file=None, database_url=url, data_dir=root))
    return server, url


def settings_for(database_url: str, data_dir: Path, **extra: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(_env_file=None, database_url=database_url, data_dir=data_dir, graphs=TEST_GRAPHS,
                    actor_name_prefix=f"r{tag}-", sandbox_installation_id=f"rel{tag}",
                    **{**FAST_TIMERS, **REAL_PARTS, **SMALL_SANDBOX, **extra})


def deploy(settings: Settings, serve_http_port: int, app_name: str | None = None) -> str:
    """The fabric and the Serve app (route prefix ``/<app_name>``) on ``settings``; returns the API URL."""
    from ray import serve

    from actors.bootstrap import ensure_system
    from serve_app.app import build_app

    app_name = app_name or f"rel-{uuid.uuid4().hex[:6]}"
    ensure_system(settings)
    overrides = {**settings.model_dump(mode="json", exclude_unset=True), "graphs": settings.graphs}
    for name in ("auth_api_keys", "anthropic_api_key", "openai_api_key"):  # dumped masked: pass them as set
        secret = getattr(settings, name)
        if secret is not None:
            overrides[name] = secret.get_secret_value()
    serve.run(build_app({"settings": overrides, "fabric": False}), name=app_name, route_prefix=f"/{app_name}",
              blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{app_name}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ok", timeout=10).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/ok did not answer in 120 s")
        time.sleep(0.5)


def teardown(settings: Settings, app_name: str) -> None:
    from actors.bootstrap import shutdown_system
    from tests.api.conftest import undeploy
    from tests.operator.conftest import remove_workspaces

    undeploy(app_name, settings.database_url)
    shutdown_system(settings)
    remove_workspaces(settings)


@contextlib.contextmanager
def local_stack(**extra: Any) -> Iterator[Stack]:
    """Postgres, a local Ray (in this process), Serve, the fabric and the app: the whole system."""
    import warnings

    import ray
    from ray import serve

    from quadracode_ray import NAMESPACE
    from quadracode_ray.launcher.ray_head import HEAD_ENV
    from quadracode_ray.serve_ingress import ingress_env
    from tests.conftest import _free_agent_ports, free_port

    os.environ.setdefault("QUADRACODE_TEST_RAY_NO_AGENT_WAIT", "1")
    # The Serve ingress `up` would give its head (the serve_ingress setting, HAProxy by default):
    # Serve reads it from the environment of the Ray it starts here.
    os.environ.update(ingress_env(Settings().serve_ingress))
    os.environ.update(HEAD_ENV)  # what `up` gives its Ray head (the GCS's task-event cap among it)
    postgres, database_url = start_postgres()
    try:
        with warnings.catch_warnings(), _free_agent_ports():
            warnings.simplefilter("ignore")
            ray.init(address="local", namespace=NAMESPACE, num_cpus=8, include_dashboard=False,
                     logging_level="WARNING")
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            settings = settings_for(database_url, Path(tempfile.mkdtemp(prefix="qr-rel-data-")), **extra)
            url = deploy(settings, port, "rel")
            try:
                yield Stack(url=url, app_name="rel", settings=settings, postgres=postgres)
            finally:
                teardown(settings, "rel")
        finally:
            ray.shutdown()
    finally:
        postgres.stop()


def _redeploy_on_sigusr1(stack: Stack, serve_http_port: int) -> None:
    """Serve forever; SIGUSR1 deploys the app again, so a fix is tried without restarting Ray."""
    import signal
    import threading

    wanted = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: wanted.set())
    while True:
        if wanted.wait(3600):
            wanted.clear()
            deploy(stack.settings, serve_http_port, stack.app_name)
            print("redeployed", flush=True)


if __name__ == "__main__":
    with local_stack() as stack:
        print(json.dumps({"url": stack.url, "database_url": stack.settings.database_url}), flush=True)
        _redeploy_on_sigusr1(stack, int(stack.url.split(":")[2].split("/")[0]))
