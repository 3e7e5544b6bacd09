"""Deploy the Serve application through the dashboard's REST API, as ``serve deploy`` does.

The config is plain data naming ``serve_app.app:build_app`` by import path, the same
shape as ``serve_config.yaml`` in the repository.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from quadracode_ray.config import Settings
from quadracode_ray.launcher.ray_head import ray_auth_headers

APP_NAME = "quadracode"
IMPORT_PATH = "serve_app.app:build_app"


class ServeDeployError(RuntimeError):
    pass


def serve_config(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    return {
        "proxy_location": settings.serve_proxy_location,
        "http_options": {"host": settings.http_host, "port": settings.http_port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"replicas": settings.api_replicas},
                "runtime_env": {"env_vars": env},
            }
        ],
    }


def _applications_url(dashboard_url: str) -> str:
    return f"{dashboard_url}/api/serve/applications/"


def deploy(dashboard_url: str, config: dict[str, Any], timeout: float = 300.0,
           report: Callable[[str], None] | None = None) -> None:
    """Apply ``config`` and wait until the application is RUNNING (or say why it failed).

    ``report`` gets a line per stage as it is seen (times since the call): the dashboard took the
    config (it starts Serve's controller and ingress on the first deploy), the application was
    built (its deployments are known), the replicas are ready."""
    started = time.monotonic()
    seen: set[str] = set()

    def stage(name: str) -> None:
        if report is not None and name not in seen:
            seen.add(name)
            report(f"  ✓ {name} (at {time.monotonic() - started:.1f} s)")

    response = httpx.put(_applications_url(dashboard_url), json=config, headers=ray_auth_headers(), timeout=60)
    if response.status_code >= 400:
        raise ServeDeployError(f"the dashboard refused the Serve config ({response.status_code}): {response.text}")
    stage("Serve: controller and ingress up, config taken")
    deadline = time.monotonic() + timeout
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        app = application_status(dashboard_url)
        status = (app or {}).get("status", "NOT_STARTED")
        if (app or {}).get("deployments"):
            stage("Serve: application built")
        if status == "RUNNING":
            stage("Serve: API replica ready")
            return
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise ServeDeployError(f"Serve application {status}: {app.get('message', '')}")
        time.sleep(0.2)
    raise ServeDeployError(f"Serve application still {status} after {timeout:.0f} s")


def application_status(dashboard_url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(_applications_url(dashboard_url), headers=ray_auth_headers(), timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return (response.json().get("applications") or {}).get(APP_NAME)


def delete(dashboard_url: str) -> bool:
    try:
        response = httpx.delete(_applications_url(dashboard_url), headers=ray_auth_headers(), timeout=60)
    except httpx.HTTPError:
        return False
    return response.status_code < 400


def _wait_for_status(url: str, status: int, timeout: float, *, headers: dict[str, str] | None = None,
                     request_timeout: float = 2.0) -> None:
    """Poll ``url`` until it answers ``status``; ServeDeployError naming the last answer if not in time."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=request_timeout)
            if response.status_code == status:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.25)
    raise ServeDeployError(f"{url} did not answer {status} within {timeout:.0f} s (last: {last})")


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    _wait_for_status(url, 200, timeout)


# A thread that does not exist: its runs' listing answers 404 only once the API's run path is ready
# (graph assistants registered, run executors started: serve_app/context.py ready()), and it
# creates nothing.
NO_SUCH_THREAD = "00000000-0000-0000-0000-000000000000"


def run_path_probe_headers(auth_api_keys: str | None) -> dict[str, str]:
    """With auth on (settings' auth_api_keys, JSON {owner: key or [keys]}), one of its keys."""
    if not auth_api_keys:
        return {}
    keys = next(iter(json.loads(auth_api_keys).values()))
    return {"X-Api-Key": keys[0] if isinstance(keys, list) else keys}


def wait_for_run_path(api_url: str, headers: dict[str, str], timeout: float = 120.0) -> None:
    """Wait until the API's run path answers: a runs listing of a thread that does not exist, 404."""
    # One request may wait out the whole deadline: the replica holds it until its run path is ready.
    _wait_for_status(f"{api_url}/threads/{NO_SUCH_THREAD}/runs", 404, timeout, headers=headers,
                     request_timeout=timeout)
