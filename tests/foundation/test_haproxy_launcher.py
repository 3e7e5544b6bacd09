"""quadracode-haproxy: the real HAProxy, in the launcher's place, dies with the process that
started it (a Serve actor killed by `ray stop` left it serving the API port), and reloads with
-sf as Serve does them. A real haproxy binary; no Ray (tests/cluster/test_haproxy_dies_with_ray.py
runs it under Serve)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import httpx
import psutil
import pytest

from quadracode_ray.haproxy_launcher import REAL_BINARY_VAR
from quadracode_ray.serve_ingress import LAUNCHER, haproxy_binary, haproxy_launcher, ingress_env
from tests.conftest import free_port
from tests.polling import eventually_sync

# A parent that starts HAProxy through the launcher as Serve's manager does (a child of its
# thread), prints the child's pid, and lives until it is killed.
PARENT = textwrap.dedent("""\
    import subprocess, sys, threading
    child = subprocess.Popen(sys.argv[1:])
    print(child.pid, flush=True)
    threading.Event().wait()
    """)


@pytest.fixture
def haproxy(tmp_path):
    binary = haproxy_binary()
    launcher = haproxy_launcher()
    assert binary and launcher, (binary, launcher)
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(textwrap.dedent(f"""\
        global
            stats socket {tmp_path}/admin.sock mode 600 level admin expose-fd listeners
        defaults
            mode http
            timeout connect 5s
            timeout client 30s
            timeout server 30s
        frontend web
            bind 127.0.0.1:{port}
            http-request return status 200 content-type text/plain string ok
        """))
    env = {**os.environ, REAL_BINARY_VAR: binary}
    started: list[subprocess.Popen] = []

    def start(*extra: str) -> tuple[subprocess.Popen, int]:
        parent = subprocess.Popen([sys.executable, "-c", PARENT, launcher, "-db", "-f", str(config), *extra],
                                  stdout=subprocess.PIPE, text=True, env=env)
        started.append(parent)
        return parent, int(parent.stdout.readline())

    yield start, port, binary
    for parent in started:
        parent.kill()
        parent.wait(10)


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text == "ok"
    except httpx.HTTPError:
        return False


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_haproxy_dies_with_the_process_that_started_it(haproxy):
    start, port, binary = haproxy
    parent, pid = start()
    eventually_sync(lambda: answers(port), timeout=30, what="HAProxy answering")
    # The launcher became HAProxy (execv: Serve checks HAProxy's pid against the one it started).
    assert psutil.Process(pid).exe() == os.path.realpath(binary)
    parent.send_signal(signal.SIGKILL)
    eventually_sync(lambda: gone(pid), timeout=30, what="HAProxy gone with its parent")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_a_graceful_reload_through_the_launcher_takes_over(haproxy):
    start, port, _ = haproxy
    _, old = start()
    eventually_sync(lambda: answers(port), timeout=30, what="HAProxy answering")
    parent, new = start("-sf", str(old))  # as Serve's reload: the new one tells the old one to finish
    eventually_sync(lambda: gone(old), timeout=30, what="the old HAProxy finishing after -sf")
    assert answers(port) and not gone(new)
    parent.send_signal(signal.SIGKILL)
    eventually_sync(lambda: gone(new), timeout=30, what="the new HAProxy gone with its parent")


def test_the_launcher_refuses_without_a_real_binary(tmp_path):
    launcher = haproxy_launcher()
    for real in ("", "haproxy", str(tmp_path / "missing"), launcher):
        result = subprocess.run([launcher, "-v"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, REAL_BINARY_VAR: real})
        assert result.returncode != 0 and REAL_BINARY_VAR in result.stderr, (real, result.stderr)


def test_ingress_env_runs_haproxy_through_the_launcher(monkeypatch):
    env = ingress_env("haproxy")
    assert os.path.basename(env["RAY_SERVE_HAPROXY_BINARY_PATH"]) == LAUNCHER
    assert env[REAL_BINARY_VAR] == haproxy_binary()
    # A process started with that environment (a test's child cluster) finds the real binary again,
    # never the launcher running itself.
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    monkeypatch.setenv(REAL_BINARY_VAR, env[REAL_BINARY_VAR])
    assert ingress_env("haproxy")[REAL_BINARY_VAR] == env[REAL_BINARY_VAR]
