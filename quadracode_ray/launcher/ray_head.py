"""A local Ray head run as ``ray start --head --block`` in its own session.

Stopping it signals that session only (SIGTERM to all of it, then SIGKILL to what is left after a
second): the processes of this cluster and nothing else; ``ray stop`` would kill every Ray on the machine.
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
    # Past that cap the GCS remembers every dropped task attempt (its id, to count the loss), up to
    # 1,000,000 per job by default: one small entry per actor call for ever, the GCS's slow growth
    # after its warm-up in the soak (+6 MiB over 26 minutes, ~50,000 runs). 10,000 bounds that too.
    "RAY_task_events_max_dropped_task_attempts_tracked_per_job_in_gcs": "10000",
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


def spawn_ray_head(settings: Settings, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``ray start --head --block`` in a session of its own, without waiting for it (see
    wait_for_ray_head): ``up`` prepares the database meanwhile."""
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
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for_ray_head(process: subprocess.Popen, settings: Settings, log_path: Path,
                      timeout: float = 120.0) -> tuple[str, str]:
    """Wait until the head spawned by spawn_ray_head answers on its dashboard (Ray starts the
    dashboard before the raylet, and the dashboard is what deploys Serve). Returns (gcs address,
    dashboard URL); stops the head and raises if it exits or does not answer in time."""
    dashboard_host = "127.0.0.1" if settings.dashboard_host in ("0.0.0.0", "") else settings.dashboard_host
    dashboard_url = f"http://{dashboard_host}:{settings.dashboard_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RayHeadError(f"`ray start` exited with {process.returncode}; see {log_path}:\n{_tail(log_path)}")
        if dashboard_answers(dashboard_url, timeout=1.0):
            return f"{node_ip()}:{settings.ray_port}", dashboard_url
        time.sleep(0.1)
    stop_ray_head(process.pid)
    raise RayHeadError(f"the Ray head did not come up within {timeout:.0f} s; see {log_path}:\n{_tail(log_path)}")


def start_ray_head(settings: Settings, env: dict[str, str], log_path: Path, timeout: float = 120.0) -> tuple[int, str, str]:
    """Start the head and wait for its dashboard. Returns (pid, gcs address, dashboard URL)."""
    process = spawn_ray_head(settings, env, log_path)
    address, dashboard_url = wait_for_ray_head(process, settings, log_path, timeout)
    return process.pid, address, dashboard_url


# How long `down` lets the head's processes stop on SIGTERM before it kills what is left. Nothing of
# Ray's is worth waiting for: every run is in Postgres before it is acknowledged, and every actor
# may be killed at any moment by design (a crash is the same to them).
STOP_GRACE_S = 1.0


def stop_ray_head(pid: int, grace: float = STOP_GRACE_S) -> bool:
    """Stop the head ``up`` started: SIGTERM to its session, SIGKILL to what is left after ``grace``.

    ``ray start`` on SIGTERM stops its processes one after the other (raylet, GCS, dashboard,
    agents, monitors), up to a second each, so the signal goes to every process of its session
    (see spawn_ray_head: Ray's workers and the HAProxy Serve started are in process groups of their
    own but in the same session) and reaches them together; whatever of that session is still
    there after ``grace`` is killed, so nothing outlives ``down``. Only this session is touched,
    never another Ray on the machine (``ray stop`` would stop them all)."""
    if not is_our_ray_head(pid):
        return False
    # Every process of the session at once (not only `ray start`'s group): the workers and the
    # agents stop on their own SIGTERM at the same time as `ray start` stops the rest, instead of
    # waiting for the raylet to go and then for the SIGKILL after the grace.
    left = _session_processes(pid)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    left = _wait_gone(left, grace)
    # Processes started while the first ones were signalled (a worker Ray was just starting).
    left += [p for p in _session_processes(pid) if p not in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    # SIGKILL is not refused; the wait is for the kernel to take them down (bounded all the same).
    _wait_gone(left, 5.0)
    return True


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs (a zombie counts as gone: its parent reaps it, and
    these are not ours to reap), at most ``timeout``; returns those still running."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
