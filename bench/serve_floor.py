"""Ray Serve's own floor on this machine: an empty async FastAPI route behind the Serve proxy.

The API bench's targets are relative (within 5 ms of an in-process ``graph.ainvoke``; 10x the
official dev server's runs/s); this measures what Ray Serve alone costs per request here, with
no run, no Postgres and no code of ours, so a report can say which part of a gap is Serve's.

    .venv/bin/python bench/serve_floor.py [--requests 300] [--port 8932] [--ingress proxy|direct|haproxy]

It starts its own local Ray (in a temporary folder) and prints p50/p95 latency at one client
and requests/s at 1 and 10 clients (each client a thread with its own HTTP connection).
``--ingress``: Serve's Python proxy (the default), direct ingress (the replica's own HTTP
server, its port asked from the controller) or HAProxy mode (HAProxy on ``--port``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time

import httpx
from fastapi import FastAPI

INGRESS_ENV = {
    "proxy": {},
    "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0"},
}


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict:
        return {"ok": True}

    return app


def _client(url: str, requests: int, latencies: list[float] | None = None) -> None:
    with httpx.Client() as client:
        for _ in range(requests):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            if latencies is not None:
                latencies.append((time.perf_counter() - started) * 1000)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replica_port(app_name: str) -> int:
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    for group in ray.get(controller.get_target_groups.remote(app_name)):
        if group.protocol == "HTTP" and group.targets:
            return group.targets[0].port
    raise RuntimeError(f"no direct-ingress HTTP target for {app_name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per client")
    parser.add_argument("--port", type=int, default=8932)
    parser.add_argument("--ingress", choices=sorted(INGRESS_ENV), default="proxy")
    args = parser.parse_args()
    # Serve reads these when its modules are imported, in every process of the cluster.
    os.environ.update(INGRESS_ENV[args.ingress])
    if args.ingress == "haproxy":
        # HAProxy's stats and metrics listeners have fixed ports; other clusters on the machine.
        os.environ.update(RAY_SERVE_HAPROXY_STATS_PORT=str(_free_port()), RAY_SERVE_HAPROXY_METRICS_PORT=str(_free_port()))
    import ray
    from ray import serve
    temp = tempfile.mkdtemp(prefix="serve-floor-", dir="/var/tmp")
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=temp)
        app = _app()

        @serve.deployment(max_ongoing_requests=1000,
                          logging_config={"enable_access_log": False, "log_level": "WARNING"})
        @serve.ingress(app)
        class Empty:
            pass

        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(Empty.bind(), name="serve-floor", route_prefix="/")
        url = f"http://127.0.0.1:{args.port}/ok"
        if args.ingress == "direct":
            url = f"http://127.0.0.1:{_replica_port('serve-floor')}/ok"
        _client(url, 50)  # warm-up
        load_before = os.getloadavg()[0]
        latencies: list[float] = []
        _client(url, args.requests, latencies)
        cuts = statistics.quantiles(latencies, n=20)
        print(f"load average {load_before:.1f}; ingress {args.ingress}; GET /ok through Ray Serve, 1 client: "
              f"p50 {statistics.median(latencies):.2f} ms, p95 {cuts[18]:.2f} ms")
        for clients in (1, 10):
            threads = [threading.Thread(target=_client, args=(url, args.requests)) for _ in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            print(f"GET /ok through Ray Serve, {clients} clients: {clients * args.requests / elapsed:.0f} requests/s")
        serve.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
