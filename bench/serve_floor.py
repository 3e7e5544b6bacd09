"""Ray Serve's own floor on this machine: an empty async FastAPI route behind the Serve proxy.

The API bench's targets are relative (within 5 ms of an in-process ``graph.ainvoke``; 10x the
official dev server's runs/s); this measures what Ray Serve alone costs per request here, with
no run, no Postgres and no code of ours, so a report can say which part of a gap is Serve's.

    .venv/bin/python bench/serve_floor.py [--requests 300] [--port 8932]

It starts its own local Ray (in a temporary folder) and prints p50/p95 latency at one client
and requests/s at 1 and 10 clients (each client a thread with its own HTTP connection).
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
import ray
from fastapi import FastAPI
from ray import serve


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per client")
    parser.add_argument("--port", type=int, default=8932)
    args = parser.parse_args()
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
        _client(url, 50)  # warm-up
        load_before = os.getloadavg()[0]
        latencies: list[float] = []
        _client(url, args.requests, latencies)
        cuts = statistics.quantiles(latencies, n=20)
        print(f"load average {load_before:.1f}; GET /ok through Ray Serve, 1 client: "
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
