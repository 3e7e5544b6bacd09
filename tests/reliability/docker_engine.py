"""Stopping and starting the local Docker engine the way it runs here, for the fault suite.

Under systemd, ``systemctl stop/start docker``. Otherwise (this machine, CI) the engine was
started by scripts/provision-docker.sh (``setsid nohup dockerd``): it is stopped with SIGTERM,
as systemd would, and started again by that same script. ``restored()`` makes sure the engine
answers again when its block ends, whatever happened inside: no later test may find it down.

Stopping the engine stops every container on it (live-restore is off), other installations'
too: run the suite alone (``/work/team/heavy --exclusive`` on a shared machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[2]
PIDFILE = Path("/var/run/docker.pid")
STOP_DEADLINE_S = 90.0  # dockerd stops every container first (10 s grace each, in parallel)
START_DEADLINE_S = 120.0


def under_systemd() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def engine_answers(timeout: float = 5.0) -> bool:
    try:
        client = docker.from_env(timeout=timeout)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means: not answering
        return False
    finally:
        client.close()


def can_restart() -> str | None:
    """Why this process cannot restart the engine, or None when it can."""
    if os.environ.get("DOCKER_HOST", "unix://").split("://")[0] not in ("unix", ""):
        return f"DOCKER_HOST={os.environ['DOCKER_HOST']} is not a local engine"
    if os.geteuid() != 0:
        return "restarting dockerd needs root"
    if not under_systemd() and dockerd_pid() is None:
        return "no dockerd process found"
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (its parent, not us, reaps it)


def dockerd_pid() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(PIDFILE.read_text().strip())
        if _alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
            return pid
    return None


def stop() -> None:
    """Stop the engine and wait until its process is gone (with a deadline)."""
    if under_systemd():
        subprocess.run(["systemctl", "stop", "docker.socket", "docker"], check=True, timeout=STOP_DEADLINE_S)
        return
    pid = dockerd_pid()
    if pid is None:
        raise RuntimeError("no dockerd process to stop")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE_S
    while _alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"dockerd (pid {pid}) did not stop within {STOP_DEADLINE_S:.0f} s")
        time.sleep(0.2)  # polling a process we cannot wait() on (not our child)


def start() -> None:
    """Start the engine as it was started, and wait until it answers (the script waits)."""
    if under_systemd():
        subprocess.run(["systemctl", "start", "docker"], check=True, timeout=START_DEADLINE_S)
    else:
        # The script's output to a file, not a pipe: dockerd, started in the background by it,
        # must hold nothing of ours (close_fds also keeps the slot locks of `heavy` from it).
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(["bash", str(ROOT / "scripts" / "provision-docker.sh")], stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, close_fds=True,
                                  timeout=START_DEADLINE_S, cwd=ROOT)
            if done.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"provision-docker.sh failed: {out.read().decode(errors='replace')[-2000:]}")
    deadline = time.monotonic() + START_DEADLINE_S
    while not engine_answers():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Docker engine did not answer within {START_DEADLINE_S:.0f} s of its start")
        time.sleep(0.5)


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """The engine answers when this block ends, even when the block failed."""
    try:
        yield
    finally:
        if not engine_answers():
            start()
