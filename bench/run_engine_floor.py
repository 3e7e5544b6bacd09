"""The run engine's own floor: what a durable run costs with no Ray, no HTTP and no second process.

    .venv/bin/python bench/run_engine_floor.py [--clients 10] [--runs-per-client 100]

One process holds a ``RunHost`` (runs/host.py) on an embedded Postgres and plays the API's part
too: each run is created as ``runs.wait`` creates it (``qr_create_run``, inserted claimed) and
handed to the host in the same process (``RunHost.wait`` with the row: no claim, as the API's
handover), on the bench graph (bench/api_graph.py) at the official default durability. Beside it,
on the same Postgres and clients: the graph with LangGraph's own Postgres checkpointer alone
(``ainvoke``, durability "async"), and the graph in memory. CPU per run is this process's and
Postgres's, over the timed part.

This is the floor under any design that keeps the engine (a run durable in Postgres, checkpointed
by LangGraph, recorded once): a server built on it (ours, with the run in the replica's process
or in an executor) adds its HTTP stack and, for an executor, an actor call, on top of these
figures. Prints a table; records the load average. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api_bench import concurrent  # noqa: E402

GRAPH_FILE = ROOT / "bench" / "api_graph.py"
GRAPH_ID = "bench"


async def main_async(args: argparse.Namespace) -> None:
    from psycopg.types.json import Jsonb

    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres, open_async_pool
    from quadracode_ray.persistence.bootstrap import prepare_database
    from runs.graph_registry import default_assistant_id
    from runs.host import RunHost
    from runs.settings import RunSettings
    from serve_app.records.assistants import ensure_graph_assistants

    root = Path(tempfile.mkdtemp(prefix="run-engine-floor-", dir="/var/tmp"))
    postgres = EmbeddedPostgres(root / "pg", database="bench")
    url = postgres.start()
    try:
        settings = Settings(_env_file=None, database_url=url, data_dir=root,
                            graphs={GRAPH_ID: f"{GRAPH_FILE}:graph"})
        await asyncio.to_thread(prepare_database, settings)
        pool = await open_async_pool(url, min_size=4, max_size=max(4, settings.db_pool_max_size), name="floor-api")
        await ensure_graph_assistants(pool, [GRAPH_ID])
        assistant_id = default_assistant_id(GRAPH_ID)
        host = RunHost("floor-host", settings, url)
        await host.ready()
        postmaster = int(next((root / "pg").rglob("postmaster.pid")).read_text().split()[0])
        roots = [os.getpid(), postmaster]

        async def engine_call(_: int):
            thread_id = str(uuid.uuid4())

            async def one():
                run_id = str(uuid.uuid4())
                kwargs = RunSettings(graph_id=GRAPH_ID, input={"n": 1}, config={"configurable": {
                    "run_id": run_id, "thread_id": thread_id, "graph_id": GRAPH_ID, "assistant_id": assistant_id,
                    "user_id": ""}}).row()
                async with pool.connection() as conn:  # as serve_app/runs/service.py create_run
                    row = await (await conn.execute(
                        "SELECT * FROM qr_create_run(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (run_id, thread_id, assistant_id, GRAPH_ID,
                         Jsonb({"graph_id": GRAPH_ID, "assistant_id": assistant_id}), Jsonb(kwargs), "enqueue",
                         host.name, None, 0.0, False, False, True, True))).fetchone()
                row.pop("inflight")
                status, output = await host.wait(run_id, start=True, run=row)
                assert status == "success" and output == b'{"n":2}', (status, output)
            return one

        spec = importlib.util.spec_from_file_location("api_graph", GRAPH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        saver = AsyncPostgresSaver(pool)
        checkpointed = module._builder.compile(checkpointer=saver)

        async def checkpointer_call(_: int):
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}

            async def one():
                assert await checkpointed.ainvoke({"n": 1}, config, durability="async") == {"n": 2}
            return one

        async def memory_call(_: int):
            async def one():
                assert await module.graph.ainvoke({"n": 1}) == {"n": 2}
            return one

        rows = []
        for name, make in (("the run engine: create (qr_create_run) + RunHost.wait, one process", engine_call),
                           ("LangGraph's Postgres checkpointer alone (ainvoke, durability async)", checkpointer_call),
                           ("the graph in memory (ainvoke, no checkpointer)", memory_call)):
            load = os.getloadavg()[0]
            row = await concurrent(args.clients, args.runs_per_client, make, roots)
            cpu = row["cpu_ms"]  # this process counts as the bench client there
            row.update(process_ms=cpu.get("bench client", 0.0), postgres_ms=cpu.get("Postgres", 0.0))
            rows.append((name, load, row))
        await host.close()
        await pool.close()
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.clients} clients x {args.runs_per_client} runs each, after one warm-up run each; "
          f"{os.cpu_count()} CPUs; load average after: {os.getloadavg()[0]:.1f}")
    print("| what | load before | runs/s | p50 / p95 ms | CPU per run: this process | Postgres | total |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, load, row in rows:
        print(f"| {name} | {load:.1f} | {row['rps']:.1f} | {row['p50']:.1f} / {row['p95']:.1f} | "
              f"{row['process_ms']:.2f} | {row['postgres_ms']:.2f} | {row['process_ms'] + row['postgres_ms']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--runs-per-client", type=int, default=100)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
