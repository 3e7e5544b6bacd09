"""Serve's HAProxy does not outlive its Ray (#13: after `ray down` it still served the API port).

A Ray head of its own (its processes named by its temp dir, so only they are stopped: never
`ray stop` on a shared machine) started with the ingress environment of `quadracode-ray
ingress-env`; a Serve app in HAProxy mode behind it; a second app, so Serve reloads HAProxy
(`-sf`) through the launcher; then every process of that Ray SIGKILLed, as a crash or `ray
stop`'s last resort would: HAProxy goes with them and the port stops answering."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from quadracode_ray.haproxy_launcher import REAL_BINARY_VAR
from quadracode_ray.serve_ingress import ingress_env
from tests.cluster.ray_up_rig import processes_of, stop_processes
from tests.conftest import free_port
from tests.polling import eventually_sync

REPO = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent("""\
    import sys
    import ray
    from ray import serve

    ray.init(address=sys.argv[1], namespace="haproxy-test", logging_level="WARNING")
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Hello:
        def __call__(self, request):
            return "ok"

    serve.run(Hello.bind(), name=sys.argv[3], route_prefix="/" + sys.argv[3])
    """)


def haproxy_pids(folder: str) -> set[int]:
    """HAProxy processes whose config file is in ``folder`` (Serve's <folder>/<node id>/haproxy.cfg)."""
    pids = set()
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "haproxy" and "-f" in cmdline[:-1] \
                and Path(folder) in Path(cmdline[cmdline.index("-f") + 1]).parents:
            pids.add(process.pid)
    return pids


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).text == "ok"
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(900)
def test_serves_haproxy_dies_with_the_ray_that_started_it():
    marker = tempfile.mkdtemp(prefix="qr-hap-")  # the Ray's temp dir: in the cmdline of its processes
    ingress = ingress_env("haproxy")
    folder = ingress["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    # Not the session's ingress environment (its HAProxy's ports are taken): this Ray's own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_") and k != REAL_BINARY_VAR}
    # No token auth (`ray start` turns it on when ~/.ray/auth_token exists): the driver is a bare client.
    env.update(ingress, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO))
    gcs, http = free_port(), free_port()
    address = f"127.0.0.1:{gcs}"
    try:
        start = subprocess.run(
            [sys.executable, "-m", "tests.cluster.patient_ray", "start", "--head", f"--port={gcs}",
             "--node-ip-address=127.0.0.1", f"--temp-dir={marker}", "--num-cpus=2", "--include-dashboard=false",
             f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
             f"--ray-client-server-port={free_port()}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert start.returncode == 0, (start.stdout + start.stderr)[-4000:]

        def deploy(name: str) -> None:
            result = subprocess.run([sys.executable, "-c", DRIVER, address, str(http), name], cwd=REPO, env=env,
                                    capture_output=True, text=True, timeout=400)
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

        deploy("first")
        eventually_sync(lambda: answers(f"http://127.0.0.1:{http}/first"), timeout=120, what="the first app")
        (before,) = eventually_sync(lambda: haproxy_pids(folder), timeout=30, what="Serve's HAProxy")
        # Started through the launcher, which became HAProxy: a child of Serve's HAProxy manager.
        assert any("HAProxyManager" in part for part in psutil.Process(before).parent().cmdline())

        # Serve reloads HAProxy for a new app: a new process (-sf) takes over from the old one.
        deploy("second")
        eventually_sync(lambda: answers(f"http://127.0.0.1:{http}/second"), timeout=120, what="the second app")
        eventually_sync(lambda: before not in haproxy_pids(folder), timeout=150, what="the old HAProxy to finish")
        assert haproxy_pids(folder) and answers(f"http://127.0.0.1:{http}/first")

        for process in processes_of(marker):  # raylet, GCS, agents: the workers follow their raylet
            process.send_signal(signal.SIGKILL)
        eventually_sync(lambda: not haproxy_pids(folder), timeout=120, what="HAProxy gone with its Ray")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{http}/first", timeout=5)
    finally:
        stop_processes(marker)
        for pid in haproxy_pids(folder):  # only if the test failed: this test's own HAProxy
            os.kill(pid, signal.SIGKILL)
        for leftover in (marker, folder):  # the Ray's temp dir (its logs) and HAProxy's folder
            shutil.rmtree(leftover, ignore_errors=True)
