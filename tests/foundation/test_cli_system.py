"""The whole system on its embedded defaults: `quadracode-ray up`, `status`, `down`, as a user runs them.

Real processes: a Ray head with its dashboard, the embedded Postgres, the Serve app over
HTTP. Runs beside the test session's own Ray cluster on ports of its own, and `down` must
leave that cluster alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quadracode_ray.launcher.ray_head import ray_auth_headers
from quadracode_ray.persistence.embedded import EmbeddedPostgres
from tests.conftest import free_port
from tests.polling import eventually_sync

CLI = str(Path(sys.executable).with_name("quadracode-ray"))
# The steps `up` prints with their time on embedded defaults, a fresh head (launcher/system.py).
UP_STEPS = ("Postgres: server up", "Postgres: migrations and LangGraph tables",
            "Ray: starting a local head with its dashboard", "Serve: controller and ingress up, config taken",
            "Serve: API replica ready", "Ray Serve: deploying the API",
            "API: /health answers (Postgres through the API's pool)",
            "API: run path ready (assistants registered, run executors started)")


@pytest.fixture
def system_env(tmp_path: Path) -> dict[str, str]:
    # Short data path: the embedded Postgres socket lives in it.
    data_dir = Path("/tmp") / f"qr-cli-{uuid.uuid4().hex[:8]}"
    # Not the session's own settings, nor its Ray's Serve ingress (its HAProxy's ports): `up`
    # chooses the ingress environment of the head it starts.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUADRACODE_", "RAY_SERVE_"))}
    env.update({
        "QUADRACODE_DATA_DIR": str(data_dir),
        "QUADRACODE_HTTP_PORT": str(free_port()),
        "QUADRACODE_RAY_PORT": str(free_port()),
        "QUADRACODE_DASHBOARD_PORT": str(free_port()),
        "QUADRACODE_RAY_NUM_CPUS": "2",
        # Ray reads its settings from RAY_* too: actors' metrics reach /metrics within a second.
        "RAY_metrics_report_interval_ms": "1000",
    })
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(env["QUADRACODE_DATA_DIR"]).parent)


@pytest.mark.slow
# Both Serve ingresses (the serve_ingress setting): HAProxy mode, the default, and Serve's Python
# proxy, still selectable. Every other HTTP test runs on the session's ingress
# (QUADRACODE_SERVE_INGRESS, default haproxy).
@pytest.mark.parametrize("ingress", ["haproxy", "proxy"])
def test_up_status_down_on_embedded_defaults(system_env: dict[str, str], ray_cluster: None, ingress: str) -> None:
    import ray

    env = {**system_env, "QUADRACODE_SERVE_INGRESS": ingress}
    api = f"http://127.0.0.1:{env['QUADRACODE_HTTP_PORT']}"
    dashboard = f"http://127.0.0.1:{env['QUADRACODE_DASHBOARD_PORT']}"
    pgdata = Path(env["QUADRACODE_DATA_DIR"]) / "postgres"
    try:
        up = run_cli(env, "up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert api in up.stdout and dashboard in up.stdout
        assert "scripted model" in up.stdout  # no key set: said plainly
        # Each step's time is printed, and the total.
        for step in UP_STEPS:
            assert re.search(rf"✓ {re.escape(step)} \((?:at )?\d+\.\d s\)", up.stderr), (step, up.stderr)
        assert re.search(r"ready in \d+\.\d s", up.stdout), up.stdout

        assert httpx.get(f"{api}/ok").json() == {"ok": True}
        assert httpx.get(f"{api}/health").json()["checks"]["postgres"]["ok"] is True
        assert httpx.get(f"{dashboard}/api/version", headers=ray_auth_headers()).status_code == 200
        # What `up` says about the dashboard's token is what the dashboard does without one.
        open_without_token = httpx.get(f"{dashboard}/api/version").status_code == 200
        assert ("no token: anyone who reaches" in up.stdout) == open_without_token, up.stdout
        assert ("token auth on" in up.stdout) == (not open_without_token), up.stdout
        assert f"{api}/metrics" in up.stdout
        # The dashboard shows the Serve app's runtime_env: the database URL went by reference.
        shown = httpx.get(f"{dashboard}/api/serve/applications/", headers=ray_auth_headers()).text
        assert "QUADRACODE_SECRETS_REF" in shown and "QUADRACODE_DATABASE_URL" not in shown
        assert f"{api}/ui/" in up.stdout  # the control panel's address
        # One scrape shows the actors too: the fleet and the registry report the agents alive.
        sources = eventually_sync(lambda: _agents_alive_sources(api), timeout=60, interval=0.5,
                                  what="the fleet's and the registry's figures on /metrics")
        assert sources == {"fleet", "registry"}

        url = EmbeddedPostgres(pgdata).start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM qr_system_starts").fetchone()[0] == 1

        status = run_cli(env, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert all(check["ok"] for name, check in json.loads(status.stdout).items() if name != "docker")

        again = run_cli(env, "up")  # idempotent: reuses the running head
        assert again.returncode == 0 and "already running" in again.stderr
        # Seconds later (Ray forgets a gauge not set for 2 s here), nothing having changed, the
        # gauges are still exported: set again by the metrics backend, not only when agents change.
        assert eventually_sync(lambda: _agents_alive_sources(api), timeout=10, interval=0.5,
                               what="the gauges still on /metrics") == {"fleet", "registry"}
    finally:
        down = run_cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert "data kept" in down.stderr
    for step in ("Ray: stopping the local head", "Postgres: stopping the embedded server (data kept)"):
        assert re.search(rf"✓ {re.escape(step)}.* \(\d+\.\d s\)", down.stderr), (step, down.stderr)
    assert re.search(r"down in \d+\.\d s", down.stderr), down.stderr

    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/ok", timeout=2)
    assert not EmbeddedPostgres(pgdata).is_running()
    status = run_cli(env, "status")
    assert status.returncode == 3

    # The data survived `down`, and the test session's own Ray cluster is untouched.
    url = EmbeddedPostgres(pgdata).start()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM qr_system_starts").fetchone()[0] == 2
    finally:
        EmbeddedPostgres(pgdata).stop()
        shutil.rmtree(env["QUADRACODE_DATA_DIR"], ignore_errors=True)
    assert ray.get(ray.put("still here")) == "still here"


def _agents_alive_sources(api: str) -> set[str] | None:
    text = httpx.get(f"{api}/metrics", timeout=10).text
    sources = {sample.labels["source"] for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "ray_quadracode_agents_alive"}
    return sources if sources >= {"fleet", "registry"} else None


def test_bad_configuration_exits_2_with_the_variable_named(system_env: dict[str, str]) -> None:
    env = {**system_env, "QUADRACODE_HTTP_PORT": "eighty"}
    result = run_cli(env, "status")
    assert result.returncode == 2
    assert "QUADRACODE_HTTP_PORT" in result.stderr


def test_down_with_nothing_running_says_so(system_env: dict[str, str]) -> None:
    result = run_cli(system_env, "down")
    assert result.returncode == 0
    assert "Nothing was running" in result.stderr


def test_config_env_sample_matches_the_file(system_env: dict[str, str]) -> None:
    result = run_cli(system_env, "config", "--env-sample")
    assert result.returncode == 0
    assert result.stdout == (Path(__file__).resolve().parents[2] / ".env.sample").read_text()
