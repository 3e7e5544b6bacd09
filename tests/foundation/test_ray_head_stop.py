"""`down`'s stop of the Ray head `up` started: SIGTERM to its session, then SIGKILL within a deadline.

Real processes, no Ray: a stand-in `ray start --head --block` (a script named `ray`, as
is_our_ray_head recognises the head) in a session of its own that ignores SIGTERM, with a child in
a process group of its own that ignores it too (as Ray's workers and Serve's HAProxy are in the
head's session but not in its process group). Both must be gone within the grace period plus the
kill, and a process of another session (another helper's Ray) must be left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from quadracode_ray.launcher.ray_head import stop_ray_head
from tests.polling import eventually_sync

STUBBORN_HEAD = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"], process_group=0)
print(child.pid, flush=True)
time.sleep(600)
"""


def _spawn(tmp_path: Path, new_session: bool) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "ray"
    script.write_text(STUBBORN_HEAD)
    head = subprocess.Popen([sys.executable, str(script), "start", "--head", "--block"], stdout=subprocess.PIPE,
                            text=True, start_new_session=new_session)
    child_pid = int(head.stdout.readline())
    return head, child_pid


def test_stop_kills_a_head_that_ignores_sigterm_and_its_session_within_the_grace(tmp_path: Path) -> None:
    head, child_pid = _spawn(tmp_path, new_session=True)
    child = psutil.Process(child_pid)
    try:
        assert os.getsid(child_pid) == head.pid and os.getpgid(child_pid) != head.pid
        started = time.monotonic()
        assert stop_ray_head(head.pid, grace=0.5) is True
        elapsed = time.monotonic() - started
        head.wait(timeout=5)
        eventually_sync(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, timeout=5,
                        what="the head's session child gone")
        # The grace, then the kill: far from Ray's own drain or a 60 s wait.
        assert elapsed < 3.0, elapsed
    finally:
        for pid in (head.pid, child_pid):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_stop_leaves_a_process_that_is_not_our_head_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        assert stop_ray_head(other.pid, grace=0.2) is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
