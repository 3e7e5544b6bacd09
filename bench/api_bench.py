"""Benchmark of the LangGraph API, every peer side by side in one run (bench/peers.py):

    .venv/bin/python bench/api_bench.py                       # -> bench/reports/api.md (keeps its notes)
    .venv/bin/python bench/api_bench.py --clients 1 10 --runs-per-client 5 --ingress proxy

On the trivial graph of bench/api_graph.py (one node adding one), the same clients against:
ours (Ray Serve, durable on Postgres), the official dev server (in memory), Aegra (durable, on the
same embedded Postgres), Serve's empty route (its ingress alone) and ``graph.ainvoke`` in this
process (with and without a Postgres checkpointer):

- ``runs.wait`` and ``runs.stream`` (stream_mode values, read to the end) latency p50/p95 and
  runs per second at 1, 10 and 32 concurrent clients, through the official langgraph-sdk client;
- CRUD latency (assistants create/get, threads create/get, store put/get), one client;
- CPU per run by process at 10 clients (what bounds runs/s on a small machine);
- a segment breakdown of one ``runs.wait`` at one client, from the floors measured beside it;
- the machine's load average before and after, and the CPU other processes took during the
  run: when the machine was busy the report gives no ratios.

It starts everything itself in a temporary folder and touches no running system. Run it alone
on the machine (on a shared one: ``/work/team/heavy --exclusive``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import api_report, peers  # noqa: E402

GRAPH_FILE, GRAPH_ID, Peer = peers.GRAPH_FILE, peers.GRAPH_ID, peers.Peer

REPORT = ROOT / "bench" / "reports" / "api.md"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def wait_up(peer: Peer, deadline_s: float) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if peer.process is not None and peer.process.poll() is not None:
                raise RuntimeError(f"{peer.name} at {peer.url} exited with {peer.process.returncode}")
            try:
                if (await http.get(f"{peer.url}{peer.health_path}", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{peer.name} at {peer.url} did not answer within {deadline_s} s")


# --- measurements ------------------------------------------------------------------------------------
_PROCESS_KINDS = (("HAProxyManager", "HAProxy manager"), ("haproxy", "HAProxy"),
                  ("ProxyActor", "Serve proxy"), ("ServeReplica", "API replica"), ("RunExecutor", "run executors"),
                  ("postgres", "Postgres"), ("ServeController", "Serve controller"), ("gcs_server", "Ray GCS"),
                  ("raylet", "raylet"))


def process_cpu(roots: list[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of ``roots`` and their descendants: pid -> (kind, seconds)."""
    try:
        import psutil  # Ray's dependency
    except ImportError:
        return {}
    found: dict[int, tuple[str, float]] = {}
    for root in roots:
        try:
            top = psutil.Process(root)
            processes = [top, *top.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                command = " ".join(process.cmdline())
                times = process.cpu_times()
            except psutil.Error:
                continue
            kind = "bench client" if process.pid == os.getpid() else next(
                (name for key, name in _PROCESS_KINDS if key in command), "other Ray workers" if "ray" in command
                else "Aegra" if "aegra" in command else "official server" if "langgraph" in command else "other")
            found[process.pid] = (kind, times.user + times.system)
    return found


def cpu_per_run(before: dict, after: dict, runs: int) -> dict[str, float]:
    """ms of CPU per run by kind of process, between two ``process_cpu`` snapshots."""
    out: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        if pid in before:
            out[kind] = out.get(kind, 0.0) + (seconds - before[pid][1]) * 1000 / runs
    return dict(sorted(out.items(), key=lambda item: -item[1]))


async def concurrent(clients: int, per_client: int, make_call: Callable[[int], Awaitable[Callable]],
                     cpu_roots: list[int] | None = None) -> dict:
    """``clients`` tasks, each making ``per_client`` sequential calls; latency list and rate
    (and CPU per run by process of the trees under ``cpu_roots``)."""
    calls = [await make_call(i) for i in range(clients)]
    latencies: list[float] = []

    async def client_loop(call) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(calls[i]() for i in range(clients)))  # warm-up: one call per client
    cpu_before = process_cpu(cpu_roots) if cpu_roots else {}
    t0 = time.perf_counter()
    await asyncio.gather(*(client_loop(call) for call in calls))
    wall = time.perf_counter() - t0
    row = {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "rps": len(latencies) / wall,
           "n": len(latencies)}
    if cpu_roots:
        row["cpu_ms"] = cpu_per_run(cpu_before, process_cpu(cpu_roots), len(latencies))
    return row


def distinct_config() -> dict:
    """A config no other assistant has, the same way for every peer: Aegra refuses (409) a second
    assistant of the same graph and config whatever its id (aegra-api 0.6.0's assistant_service)."""
    return {"configurable": {"bench_assistant": uuid.uuid4().hex}}


async def bench_server(peer: Peer, clients_list: list[int], per_client: int) -> dict:
    from langgraph_sdk import get_client

    url, cpu_roots = peer.url, peer.cpu_roots
    client = get_client(url=url, api_key=None, timeout=120)
    assistant = await client.assistants.create(GRAPH_ID, name="bench", config=distinct_config())
    aid = assistant["assistant_id"]
    out: dict = {"wait": {}, "stream": {}}

    async def wait_call(_: int):
        tid = (await client.threads.create())["thread_id"]

        async def call():
            result = await client.runs.wait(tid, aid, input={"n": 1})
            assert result == {"n": 2}, result
        return call

    async def stream_call(_: int):
        tid = (await client.threads.create())["thread_id"]

        async def call():
            events = [part.event async for part in client.runs.stream(tid, aid, input={"n": 1},
                                                                        stream_mode="values")]
            assert events[0] == "metadata" and "values" in events, events
        return call

    for clients in clients_list:
        for mode, make in (("wait", wait_call), ("stream", stream_call)):
            row = await concurrent(clients, per_client, make, cpu_roots if clients == 10 else None)
            out[mode][clients] = row
            print(f"  {peer.name} {mode:6s} x{clients:<3d} p50 {row['p50']:8.1f} ms  p95 {row['p95']:8.1f} ms  "
                  f"{row['rps']:7.1f} runs/s", flush=True)
    out["crud"] = await bench_crud(client, peer.health_path)
    return out


async def bench_crud(client, health_path: str, n: int = 40) -> dict:
    # One label: Aegra 0.6.0 reads the SDK's dotted namespace ("a.b") of a GET as one label and
    # answers 500 (InvalidNamespaceError); every peer gets the same single-label namespace.
    namespace = [f"bench{uuid.uuid4().hex}"]
    state: dict = {}

    async def assistants_create():
        state["aid"] = (await client.assistants.create(GRAPH_ID, config=distinct_config()))["assistant_id"]

    async def assistants_get():
        await client.assistants.get(state["aid"])

    async def threads_create():
        state["tid"] = (await client.threads.create())["thread_id"]

    async def threads_get():
        await client.threads.get(state["tid"])

    async def store_put():
        await client.store.put_item(namespace, "k", {"v": 1})

    async def store_get():
        await client.store.get_item(namespace, "k")

    async def ok():
        await client.http.get(health_path)

    rows = {}
    for name, op in (("GET /ok (HTTP floor)", ok), ("assistants.create", assistants_create), ("assistants.get", assistants_get),
                     ("threads.create", threads_create), ("threads.get", threads_get),
                     ("store.put_item", store_put), ("store.get_item", store_get)):
        samples = []
        try:
            await op()
            for _ in range(n):
                t0 = time.perf_counter()
                await op()
                samples.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # a peer's failing call is reported in its cell, the bench goes on
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            print(f"  {name} failed: {rows[name]['error']}", flush=True)
            continue
        rows[name] = {"p50": percentile(samples, 50), "p95": percentile(samples, 95)}
    return rows


async def bench_floor(clients_list: list[int], per_client: int) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("api_graph", GRAPH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    async def make(_: int):
        async def call():
            assert await module.graph.ainvoke({"n": 1}) == {"n": 2}
        return call

    return {clients: await concurrent(clients, per_client, make) for clients in clients_list}


async def bench_checkpointed(database_url: str, n: int = 40) -> dict:
    """The bench graph with a Postgres checkpointer in this process (durability "async", as our
    runs): what a durable graph costs without any server; one client."""
    import importlib.util

    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    spec = importlib.util.spec_from_file_location("api_graph", GRAPH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False,
                                   kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        graph = module._builder.compile(checkpointer=AsyncPostgresSaver(pool))
        samples = []
        for i in range(n + 1):
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            t0 = time.perf_counter()
            assert await graph.ainvoke({"n": 1}, config, durability="async") == {"n": 2}
            if i:
                samples.append((time.perf_counter() - t0) * 1000)
    return {"p50": percentile(samples, 50), "p95": percentile(samples, 95)}


async def bench_http_floor(peer: Peer, clients_list: list[int], per_client: int) -> dict:
    """GET on Serve's empty route: latency and requests/s at each client count."""
    import httpx

    async def make(_: int):
        http = httpx.AsyncClient(base_url=peer.url, timeout=60)

        async def call():
            (await http.get("/ok")).raise_for_status()
        return call

    return {clients: await concurrent(clients, per_client * 3, make) for clients in clients_list}


QUIET_WAIT_S = 90.0


async def settled_load(cpus: int, wait_s: float) -> tuple[float, float, float]:
    """The load average once its 1-minute figure is under ``cpus``, or after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] >= cpus and time.monotonic() < deadline:
        await asyncio.sleep(2)
    return os.getloadavg()


def machine_cpu_s() -> float:
    import psutil

    times = psutil.cpu_times()
    return times.user + times.system + getattr(times, "nice", 0.0)


async def run(clients_list: list[int], per_client: int, ingress: str, with_aegra: bool = True) -> dict:
    results: dict = {"clients": clients_list, "per_client": per_client, "ingress": ingress,
                     "load_before": os.getloadavg(), "cpus": os.cpu_count()}
    root = Path(tempfile.mkdtemp(prefix="api-bench-", dir="/var/tmp"))
    official = peers.start_official(root)
    started: list[Peer] = [official]
    try:
        ours, floor, database_url = peers.start_ours(root, ingress)
        aegra = peers.start_aegra(root, database_url) if with_aegra else None
        started += [aegra] if aegra else []
        await asyncio.gather(*(wait_up(p, 240) for p in (ours, floor, official)))
        if aegra is not None:
            try:
                await wait_up(aegra, 240)
            except RuntimeError as exc:  # the run goes on without it, and the report says why
                log = root / "aegra" / "server.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
                results["aegra_failed"] = f"{exc}: {' / '.join(tail)}"[:600]
                print(f"Aegra left out: {results['aegra_failed']}", flush=True)
                aegra = None
        measured = [ours, official, *([aegra] if aegra else [])]
        # Starting the peers loads the machine for a minute, and the 1-minute load average lags:
        # the load that judges the run is the one right before its timed part, once settled.
        results["load_at_start"] = results["load_before"]
        results["load_before"] = await settled_load(os.cpu_count() or 1, QUIET_WAIT_S)
        machine_before = machine_cpu_s()
        trees_before = process_cpu(sorted({r for p in measured for r in p.cpu_roots}))
        t0 = time.monotonic()
        print("floors: graph.ainvoke in process, with a Postgres checkpointer, Serve's empty route", flush=True)
        results["floor"] = await bench_floor(clients_list, per_client)
        results["checkpointed"] = await bench_checkpointed(database_url)
        results["serve_floor"] = await bench_http_floor(floor, clients_list, per_client)
        for peer in measured:
            print(peer.name, flush=True)
            results[peer.name] = await bench_server(peer, clients_list, per_client)
        wall = time.monotonic() - t0
        trees_after = process_cpu(sorted({r for p in measured for r in p.cpu_roots}))
        # What the machine spent besides every peer's processes and this client: others' load.
        ours_cpu = sum(after - trees_before[pid][1] for pid, (_, after) in trees_after.items() if pid in trees_before)
        others = max(0.0, machine_cpu_s() - machine_before - ours_cpu)
        results["others_cpu_share"] = others / (wall * (os.cpu_count() or 1))
        results["load_after"] = os.getloadavg()
    finally:
        for peer in started:
            peer.stop()
        peers.stop_ours(root)
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 32])
    parser.add_argument("--runs-per-client", type=int, default=10)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy",
                        help="how HTTP reaches our replicas: Serve's HAProxy mode or its Python proxy")
    parser.add_argument("--no-aegra", action="store_true", help="leave the Aegra peer out")
    args = parser.parse_args()
    results = asyncio.run(run(args.clients, args.runs_per_client, args.ingress, not args.no_aegra))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    # The hand-written reading of the figures (from NOTES_HEADING on) survives a rerun.
    old = args.report.read_text() if args.report.exists() else ""
    notes = old[old.index(api_report.NOTES_HEADING):] if api_report.NOTES_HEADING in old else ""
    args.report.write_text(api_report.render(results) + ("\n" + notes if notes else ""))
    (args.report.with_suffix(".json")).write_text(__import__("json").dumps(results, indent=1, default=str))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
