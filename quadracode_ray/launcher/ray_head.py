"""A local Ray head run as ``ray start --head --block`` in its own session.

Stopping it sends SIGTERM to that one process, which drains and stops the processes of
this cluster only; ``ray stop`` would kill every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from quadracode_ray.config import Settings


class RayHeadError(RuntimeError):
    pass


HEAD_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # On SIGTERM a Ray node drains for up to 30 s, for preemptible cluster nodes. `down` needs
    # none of it: what must survive is in Postgres and every actor may be killed at any moment.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    # The GCS keeps the events of the last N tasks for the dashboard (Ray's default 100,000, ~2 KB
    # each): every API call is a few actor tasks, so the GCS grew ~8 MiB a minute for the whole
    # 15-minute soak (bench/reports/soak.md). 10,000 bounds it near +40 MiB.
    "RAY_task_events_max_num_task_in_gcs": "10000",
}


def ray_auth_headers() -> dict[str, str]:
    """Ray 2.5x enables token auth on local clusters; its dashboard API wants the token."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if path.exists():
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def dashboard_answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/api/version", headers=ray_auth_headers(), timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def dashboard_needs_token(url: str, timeout: float = 5.0) -> bool | None:
    """Whether the dashboard refuses its API without a token (Ray's token auth is on): asked, not
    assumed, since Ray turns it on or not by how it was started and which token files exist.
    None when the dashboard does not answer."""
    try:
        code = httpx.get(f"{url}/api/version", timeout=timeout).status_code
    except httpx.HTTPError:
        return None
    return code in (401, 403)


def is_our_ray_head(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "start" in cmdline and "--head" in cmdline and any(part.endswith("ray") for part in cmdline[:2])


def node_ip() -> str:
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def head_node_ip(address: str) -> str:
    """The address the head node of the Ray cluster at ``address`` has for the other nodes."""
    import ray

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        for node in ray.nodes():
            if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
                return node["NodeManagerAddress"]
        raise RayHeadError(f"the Ray cluster at {address} has no live head node")
    finally:
        ray.shutdown()


def start_ray_head(settings: Settings, env: dict[str, str], log_path: Path, timeout: float = 120.0) -> tuple[int, str, str]:
    """Start the head and wait for its dashboard. Returns (pid, gcs address, dashboard URL)."""
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_bin), "start", "--head", "--block",
        f"--port={settings.ray_port}",
        "--include-dashboard=true",
        f"--dashboard-host={settings.dashboard_host}",
        f"--dashboard-port={settings.dashboard_port}",
        "--disable-usage-stats",
    ]
    if settings.ray_num_cpus:
        cmd.append(f"--num-cpus={settings.ray_num_cpus}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    dashboard_host = "127.0.0.1" if settings.dashboard_host in ("0.0.0.0", "") else settings.dashboard_host
    dashboard_url = f"http://{dashboard_host}:{settings.dashboard_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RayHeadError(f"`ray start` exited with {process.returncode}; see {log_path}:\n{_tail(log_path)}")
        if dashboard_answers(dashboard_url, timeout=1.0):
            return process.pid, f"{node_ip()}:{settings.ray_port}", dashboard_url
        time.sleep(0.25)
    stop_ray_head(process.pid)
    raise RayHeadError(f"the Ray head did not come up within {timeout:.0f} s; see {log_path}:\n{_tail(log_path)}")


def stop_ray_head(pid: int, timeout: float = 60.0) -> bool:
    """SIGTERM the head's ``ray start`` process and its own children at once; SIGKILL its session if
    it hangs.

    On SIGTERM ``ray start`` stops its processes one after the other (raylet, GCS, dashboard, agents,
    monitors), giving each up to a second: several seconds in all. Sent to its process group (its
    session, see start_ray_head), the signal reaches them together and each one's wait ends at
    once. Ray's workers are in process groups of their own: the raylet stops them, as before."""
    if not is_our_ray_head(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.TimeoutExpired:
        os.killpg(pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
    # Done when nothing of the cluster is left: every process of the head's session (its workers,
    # the HAProxy Serve started) has exited; what is left after 10 s is killed.
    deadline = time.monotonic() + 10.0
    while (left := _session_processes(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return True


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
