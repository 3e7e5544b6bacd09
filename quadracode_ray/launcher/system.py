"""``up``, ``down`` and ``status`` of the whole system on this machine."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.graph_specs import replaced_builtins
from quadracode_ray.launcher import ray_head, serve_deploy
from quadracode_ray.launcher.preflight import Check, docker_check
from quadracode_ray.launcher.state import PostgresState, RayState, StateFile, SystemState
from quadracode_ray.persistence import EmbeddedPostgres, prepare_database
from quadracode_ray.persistence.bootstrap import record_system_start, resolve_database_url
from quadracode_ray.persistence.cluster_postgres import (
    cluster_pgdata,
    start_cluster_postgres,
    stop_cluster_postgres,
)
from quadracode_ray.serve_ingress import ingress_env
from quadracode_ray.settings_secrets import worker_env

Report = Callable[[str], None]


@dataclass
class UpResult:
    api_url: str
    dashboard_url: str | None
    ray_address: str
    database_url: str
    embedded_postgres: bool
    model: str
    scripted_model: bool
    checks: list[Check] = field(default_factory=list)


@contextmanager
def _step(report: Report, label: str) -> Iterator[None]:
    started = time.monotonic()
    report(f"… {label}")
    yield
    report(f"✓ {label} ({time.monotonic() - started:.1f} s)")


def _child_env(settings: Settings, database_url: str) -> dict[str, str]:
    env = settings.to_env()
    env["QUADRACODE_DATABASE_URL"] = database_url
    return env


def up(settings: Settings, report: Report = print, *, cluster_postgres: bool = False) -> UpResult:
    """Start (or join) everything; idempotent: a second ``up`` reuses what is running.

    Ready means the API answers /health through its Postgres pool and its run path answers (graph
    assistants registered, run executors started), and the fabric's singletons answer (an API
    replica reports ready only once they do: serve_app/app.py). The database's
    migrations run while the Ray head starts (they need only the server's URL, which the head's
    environment carries). Each step prints its own time; overlapping steps overlap.

    ``cluster_postgres`` (the head of a ``ray up`` cluster): with no database URL set, Postgres
    runs on TCP with a password (persistence/cluster_postgres.py) so every node reaches it."""
    state_file = StateFile(settings.state_dir)
    with state_file.locked(), ThreadPoolExecutor(max_workers=1) as background:
        # The Docker check is only reported: it runs meanwhile, off the path to ready.
        docker = background.submit(docker_check, settings)
        state = state_file.read()

        pgdata = None
        if cluster_postgres and not settings.database_url:
            if not settings.ray_address:
                raise ray_head.RayHeadError("--cluster-postgres runs on a cluster's head: set QUADRACODE_RAY_ADDRESS")
            with _step(report, "Postgres: the cluster's server on TCP, with a password"):
                url = start_cluster_postgres(settings, ray_head.head_node_ip(settings.ray_address))
            settings = settings.model_copy(update={"database_url": url})
            pgdata = str(cluster_pgdata(settings))
        with _step(report, "Postgres: server up"):
            database_url, embedded = resolve_database_url(settings)
        state.postgres = PostgresState(embedded=embedded, url=database_url,
                                       pgdata=str(settings.embedded_pgdata) if embedded else pgdata)
        settings = settings.model_copy(update={"database_url": database_url})
        env = _child_env(settings, database_url)

        head = None
        if settings.ray_address:
            with _step(report, f"Ray: joining {settings.ray_address}"):
                dashboard_url = _dashboard_of(settings.ray_address)
            state.ray = RayState(started_by_us=False, address=settings.ray_address, dashboard_url=dashboard_url)
        elif state.ray and state.ray.started_by_us and ray_head.is_our_ray_head(state.ray.pid):
            report(f"✓ Ray: local head already running (pid {state.ray.pid})")
        else:
            head_started = time.monotonic()
            report("… Ray: starting a local head with its dashboard")
            head_env = {**os.environ, **env, **ray_head.HEAD_ENV, **ingress_env(settings.serve_ingress)}
            head = ray_head.spawn_ray_head(settings, head_env, settings.state_dir / "ray-head.log")
            # Recorded at once: a failure below still leaves `down` the head to stop.
            state.ray = RayState(started_by_us=True, pid=head.pid, address="", dashboard_url=None)
            state_file.write(state)

        with _step(report, "Postgres: migrations and LangGraph tables"):
            prepare_database(settings)

        if head is not None:
            address, dashboard_url = ray_head.wait_for_ray_head(head, settings, settings.state_dir / "ray-head.log")
            report(f"✓ Ray: starting a local head with its dashboard ({time.monotonic() - head_started:.1f} s)")
            state.ray = RayState(started_by_us=True, pid=head.pid, address=address, dashboard_url=dashboard_url)
        state_file.write(state)

        with _step(report, "Ray Serve: deploying the API"):
            # The Serve config is shown by the dashboard: secrets go by reference (settings_secrets).
            shown_env = worker_env(env, gcs_address=state.ray.address)
            serve_deploy.deploy(state.ray.dashboard_url, serve_deploy.serve_config(settings, shown_env), report=report)
        api_url = f"http://{_reachable(settings.http_host)}:{settings.http_port}"
        with _step(report, "API: /health answers (Postgres through the API's pool)"):
            serve_deploy.wait_for_http(f"{api_url}/health")
        with _step(report, "API: run path ready (assistants registered, run executors started)"):
            keys = settings.auth_api_keys.get_secret_value() if settings.auth_api_keys else None
            serve_deploy.wait_for_run_path(api_url, serve_deploy.run_path_probe_headers(keys))
        state.api_url = api_url
        state_file.write(state)

        record_system_start(database_url, state.ray.address)
        for graph_id in replaced_builtins(settings):
            report(f"! graph '{graph_id}': your graph replaces the built-in '{graph_id}' assistant; "
                   "its runs execute on the run executors like any user graph")
        checks = [docker.result()]
        return UpResult(api_url=api_url, dashboard_url=state.ray.dashboard_url, ray_address=state.ray.address,
                        database_url=database_url, embedded_postgres=embedded, model=settings.default_model,
                        scripted_model=settings.uses_scripted_model, checks=checks)


def down(settings: Settings, report: Report = print) -> SystemState:
    """Stop what ``up`` started; data (Postgres, workspaces, snapshots) is kept.

    A head ``up`` started and the Postgres stop at the same time: nothing acknowledged is in Ray
    (every run is in Postgres first), and Postgres stops in its fast mode, which ends its clients'
    sessions, rolls back what they had not committed and writes a checkpoint: a clean shutdown."""
    state_file = StateFile(settings.state_dir)
    with state_file.locked():
        state = state_file.read()
        ours = bool(state.ray and state.ray.started_by_us and ray_head.is_our_ray_head(state.ray.pid))
        # A head we started takes Serve down with it: deleting the app first only adds its drain.
        if state.ray and state.ray.dashboard_url and not ours:
            with _step(report, "Ray Serve: removing the API"):
                serve_deploy.delete(state.ray.dashboard_url)
        if ours:
            with ThreadPoolExecutor(max_workers=2) as pool:
                stopping = [pool.submit(_stop_ray, settings, state, report),
                            pool.submit(_stop_postgres, settings, state, report)]
                for future in stopping:
                    future.result()
        else:  # a cluster we joined keeps running: its actors go before their database does
            _stop_ray(settings, state, report)
            _stop_postgres(settings, state, report)
        state_file.write(SystemState())
        return state


def _stop_ray(settings: Settings, state: SystemState, report: Report) -> None:
    if state.ray and state.ray.started_by_us:
        with _step(report, f"Ray: stopping the local head (pid {state.ray.pid})"):
            ray_head.stop_ray_head(state.ray.pid or 0)
    elif state.ray:
        with _step(report, f"Ray: removing the actors of namespace {NAMESPACE!r}"):
            _kill_namespace_actors(state.ray.address)


def _stop_postgres(settings: Settings, state: SystemState, report: Report) -> None:
    if state.postgres and state.postgres.embedded and state.postgres.pgdata:
        with _step(report, "Postgres: stopping the embedded server (data kept)"):
            EmbeddedPostgres(state.postgres.pgdata).stop()
    elif state.postgres and state.postgres.pgdata:
        with _step(report, "Postgres: stopping the cluster's server (data kept)"):
            stop_cluster_postgres(settings)


@dataclass
class Status:
    state: SystemState
    postgres: Check
    ray: Check
    serve: Check
    api: Check
    docker: Check

    @property
    def checks(self) -> list[Check]:
        return [self.postgres, self.ray, self.serve, self.api, self.docker]

    @property
    def running(self) -> bool:
        return all(check.ok for check in (self.postgres, self.ray, self.serve, self.api))


def status(settings: Settings) -> Status:
    state = StateFile(settings.state_dir).read()
    if state.postgres is None:
        postgres = Check("postgres", False, "not started by `up`")
    elif state.postgres.embedded:
        running = EmbeddedPostgres(state.postgres.pgdata or settings.embedded_pgdata).is_running()
        postgres = Check("postgres", running, f"embedded in {state.postgres.pgdata}" + ("" if running else " (stopped)"))
    else:
        postgres = Check("postgres", True, "external (database_url)")
    dashboard = state.ray.dashboard_url if state.ray else None
    if state.ray is None:
        ray = Check("ray", False, "not started by `up`")
    else:
        alive = bool(dashboard) and ray_head.dashboard_answers(dashboard)
        ray = Check("ray", alive, f"{state.ray.address}, dashboard {dashboard}" + ("" if alive else " (not answering)"))
    app = serve_deploy.application_status(dashboard) if dashboard and ray.ok else None
    serve = Check("serve", bool(app and app.get("status") == "RUNNING"),
                  f"application {serve_deploy.APP_NAME}: {(app or {}).get('status', 'absent')}")
    api = Check("api", False, "no URL recorded")
    if state.api_url:
        try:
            answered = httpx.get(f"{state.api_url}/ok", timeout=3).status_code == 200
        except httpx.HTTPError:
            answered = False
        api = Check("api", answered, f"{state.api_url}" + ("" if answered else " (not answering)"))
    return Status(state=state, postgres=postgres, ray=ray, serve=serve, api=api, docker=docker_check(settings))


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _dashboard_of(address: str) -> str:
    import ray

    context = ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
    try:
        url = context.dashboard_url
    finally:
        ray.shutdown()
    if not url:
        raise ray_head.RayHeadError(f"the Ray cluster at {address} runs no dashboard; Serve cannot be deployed")
    return url if url.startswith("http") else f"http://{url}"


def _kill_namespace_actors(address: str) -> int:
    import ray
    from ray.util.state import list_actors

    ray.init(address=address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
    try:
        killed = 0
        for actor in list_actors(filters=[("ray_namespace", "=", NAMESPACE), ("state", "=", "ALIVE")]):
            if actor.name:
                ray.kill(ray.get_actor(actor.name, namespace=NAMESPACE), no_restart=True)
                killed += 1
        return killed
    finally:
        ray.shutdown()
