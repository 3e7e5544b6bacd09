"""The API's CRUD calls inside one process, without Serve or HTTP: what the replica itself costs.

    .venv/bin/python bench/crud_profile.py [--calls 300] [--profile threads.get]

Starts an embedded Postgres of its own, builds the FastAPI app as a replica does (no panel) and
calls it through httpx's ASGI transport, so the per-call time is the app's work only (routing,
middleware, validation, SQL, serialization). The difference to the CRUD p50 of
bench/api_bench.py is what the ingress and the HTTP hop add. ``--profile OP`` prints cProfile's
top functions for that operation.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRAPH_ID = "bench"
GRAPH_FILE = ROOT / "bench" / "api_graph.py"


def _operations(client, namespace: list[str]) -> dict:
    state: dict = {}

    async def assistants_create():
        response = await client.post("/assistants", json={"graph_id": GRAPH_ID})
        state["aid"] = response.json()["assistant_id"]

    async def assistants_get():
        (await client.get(f"/assistants/{state['aid']}")).raise_for_status()

    async def threads_create():
        state["tid"] = (await client.post("/threads", json={})).json()["thread_id"]

    async def threads_get():
        (await client.get(f"/threads/{state['tid']}")).raise_for_status()

    async def store_put():
        (await client.put("/store/items", json={"namespace": namespace, "key": "k", "value": {"v": 1}})).raise_for_status()

    async def store_get():
        (await client.get("/store/items", params={"namespace": ".".join(namespace), "key": "k"})).raise_for_status()

    async def ok():
        (await client.get("/ok")).raise_for_status()

    return {"GET /ok": ok, "assistants.create": assistants_create, "assistants.get": assistants_get,
            "threads.create": threads_create, "threads.get": threads_get, "store.put_item": store_put,
            "store.get_item": store_get}


async def run(calls: int, profile: str | None) -> None:
    import httpx

    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres, prepare_database
    from serve_app.asgi import create_fastapi_app
    from serve_app.context import AppContext
    from serve_app.records.assistants import ensure_graph_assistants

    root = Path(tempfile.mkdtemp(prefix="qr-crud-"))
    postgres = EmbeddedPostgres(root / "pg", database="bench")
    try:
        url = postgres.start()
        settings = Settings(_env_file=None, database_url=url, data_dir=str(root), panel_enabled=False,
                            graphs={GRAPH_ID: f"{GRAPH_FILE}:graph"})
        prepare_database(settings)
        context = AppContext(settings)
        pool = await context.pool()
        await ensure_graph_assistants(pool, context.graphs.ids())
        context._ready = True  # CRUD needs no run executors (they are Ray actors)
        app = create_fastapi_app(context)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            operations = _operations(client, ["bench", uuid.uuid4().hex])
            print(f"{'operation':20s} {'p50 ms':>8s} {'p95 ms':>8s}  ({calls} calls, in process)")
            for name, op in operations.items():
                for _ in range(20):
                    await op()
                samples = []
                profiler = cProfile.Profile() if name == profile else None
                if profiler:
                    profiler.enable()
                for _ in range(calls):
                    started = time.perf_counter()
                    await op()
                    samples.append((time.perf_counter() - started) * 1000)
                if profiler:
                    profiler.disable()
                samples.sort()
                print(f"{name:20s} {statistics.median(samples):8.2f} {samples[int(len(samples) * 0.95)]:8.2f}")
                if profiler:
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        await context.close()
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--profile", default=None, help="an operation to profile, e.g. threads.get")
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.profile))


if __name__ == "__main__":
    main()
