"""Benchmark of the LangGraph API: ours on Ray Serve, the official dev server, and the in-process floor.

    .venv/bin/python bench/api_bench.py                       # -> bench/reports/api.md (keeps its notes)
    .venv/bin/python bench/api_bench.py --clients 1 10 --runs-per-client 5

One run, side by side, on the trivial graph of bench/api_graph.py (one node adding one):

- ``runs.wait`` and ``runs.stream`` (stream_mode values, read to the end) latency p50/p95 and
  runs per second at 1, 10 and 32 concurrent clients, each client on its own thread, through
  the official langgraph-sdk client;
- the floor: ``graph.ainvoke`` in this process (no HTTP, no queue, no checkpointer);
- CRUD latency (assistants create/get, threads create/get, store put/get), one client;
- CPU per run by process at 10 clients (what bounds runs/s on a small machine).

It starts its own local Ray, Serve on a free port and an embedded Postgres in a temporary
folder, and the official server (``langgraph dev``) on another free port; it touches no
running system. Figures depend on the machine's load, which the report records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GRAPH_FILE = ROOT / "bench" / "api_graph.py"
REPORT = ROOT / "bench" / "reports" / "api.md"
GRAPH_ID = "bench"
NOTES_HEADING = "## Reading these figures"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_up(url: str, deadline_s: float, process: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server at {url} exited with {process.returncode}")
            try:
                if (await http.get(f"{url}/ok", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {deadline_s} s")


# --- measurements ------------------------------------------------------------------------------------
_PROCESS_KINDS = (("ProxyActor", "Serve proxy"), ("ServeReplica", "API replica"), ("RunExecutor", "run executors"),
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
                else "official server" if "langgraph" in command else "other")
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


async def bench_server(url: str, clients_list: list[int], per_client: int, cpu_roots: list[int]) -> dict:
    from langgraph_sdk import get_client

    client = get_client(url=url, api_key=None, timeout=120)
    assistant = await client.assistants.create(GRAPH_ID, name="bench")
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
            print(f"  {url} {mode:6s} x{clients:<3d} p50 {row['p50']:8.1f} ms  p95 {row['p95']:8.1f} ms  "
                  f"{row['rps']:7.1f} runs/s", flush=True)
    out["crud"] = await bench_crud(client)
    return out


async def bench_crud(client, n: int = 40) -> dict:
    namespace = ["bench", uuid.uuid4().hex]
    state: dict = {}

    async def assistants_create():
        state["aid"] = (await client.assistants.create(GRAPH_ID))["assistant_id"]

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
        await client.http.get("/ok")

    rows = {}
    for name, op in (("GET /ok (HTTP floor)", ok), ("assistants.create", assistants_create), ("assistants.get", assistants_get),
                     ("threads.create", threads_create), ("threads.get", threads_get),
                     ("store.put_item", store_put), ("store.get_item", store_get)):
        await op()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await op()
            samples.append((time.perf_counter() - t0) * 1000)
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


# --- the systems under test -----------------------------------------------------------------------
def start_official(root: Path) -> tuple[subprocess.Popen, str, Path]:
    """``langgraph dev`` in its own folder (it keeps its state there) on the bench graph."""
    port = free_port()
    workdir = root / "official"
    workdir.mkdir()
    (workdir / "langgraph.json").write_text(json.dumps({"dependencies": ["."],
                                                        "graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}}))
    log = workdir / "server.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "LANGSMITH_API_KEY": ""}
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload", "--port", str(port),
         "--config", "langgraph.json"], cwd=workdir, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    return process, f"http://127.0.0.1:{port}", log


def start_ours(root: Path, max_ongoing_requests: int | None = None) -> tuple[str, list[int]]:
    """Ours on a local Ray; its URL and the roots of its process trees (this process, which
    started Ray, and Postgres)."""
    import ray
    from ray import serve

    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres, prepare_database
    from serve_app.app import APP_NAME, QuadracodeAPI, build_app

    url = EmbeddedPostgres(root / "pg", database="bench").start()
    prepare_database(Settings(_env_file=None, database_url=url, data_dir=root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(address="local", namespace=NAMESPACE, num_cpus=max(4, os.cpu_count() or 1),
                 include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = {"database_url": url, "data_dir": str(root), "graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}}
    if max_ongoing_requests is None:
        application = build_app({"settings": settings})
    else:  # what build_app deploys, with Serve's per-replica request cap raised
        application = QuadracodeAPI.options(max_ongoing_requests=max_ongoing_requests).bind(settings)
    serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    postmaster = int(next((root / "pg").rglob("postmaster.pid")).read_text().split()[0])
    return f"http://127.0.0.1:{port}", [os.getpid(), postmaster]


def stop_ours(root: Path) -> None:
    import ray
    from ray import serve

    from quadracode_ray.persistence import EmbeddedPostgres

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
        EmbeddedPostgres(root / "pg", database="bench").stop()


async def run(clients_list: list[int], per_client: int, max_ongoing_requests: int | None = None) -> dict:
    results: dict = {"clients": clients_list, "per_client": per_client, "load_before": os.getloadavg(),
                     "max_ongoing_requests": max_ongoing_requests}
    root = Path(tempfile.mkdtemp(prefix="api-bench-", dir="/var/tmp"))
    official, official_url, _ = start_official(root)
    try:
        ours_url, ours_roots = start_ours(root, max_ongoing_requests)
        await asyncio.gather(wait_up(ours_url, 180), wait_up(official_url, 180, official))
        print("floor (graph.ainvoke in process)", flush=True)
        results["floor"] = await bench_floor(clients_list, per_client)
        print("ours (Ray Serve)", flush=True)
        results["ours"] = await bench_server(ours_url, clients_list, per_client, ours_roots)
        print("official (langgraph dev)", flush=True)
        results["official"] = await bench_server(official_url, clients_list, per_client, [official.pid])
        results["load_after"] = os.getloadavg()
    finally:
        official.terminate()
        try:
            official.wait(timeout=20)
        except subprocess.TimeoutExpired:
            official.kill()
        stop_ours(root)
        shutil.rmtree(root, ignore_errors=True)
    return results


def render(results: dict) -> str:
    floor, ours, official = results["floor"], results["ours"], results["official"]
    lines = [
        "# LangGraph API bench: ours (Ray Serve) vs the official dev server vs the in-process floor",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}); load average before {results['load_before'][0]:.1f}, "
        f"after {results['load_after'][0]:.1f} (the machine is shared: other test runs were going on).",
        f"Graph: bench/api_graph.py (one node adding one). Each client makes {results['per_client']} sequential "
        "calls on its own thread after one warm-up call; latency is per call, runs/s over the timed part.",
        "Command: `.venv/bin/python bench/api_bench.py`"
        + (f" with Serve max_ongoing_requests={results['max_ongoing_requests']}."
           if results.get("max_ongoing_requests") else " (ours deployed as build_app does)."),
        "",
        "## runs.wait and runs.stream",
        "",
        "| call | clients | floor p50 / p95 ms | ours p50 / p95 ms | official p50 / p95 ms | ours runs/s | "
        "official runs/s | ours / official |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("wait", "stream"):
        for clients in results["clients"]:
            f, o, t = floor[clients], ours[mode][clients], official[mode][clients]
            lines.append(f"| runs.{mode} | {clients} | {f['p50']:.2f} / {f['p95']:.2f} | {o['p50']:.1f} / "
                         f"{o['p95']:.1f} | {t['p50']:.1f} / {t['p95']:.1f} | {o['rps']:.1f} | {t['rps']:.1f} | "
                         f"{o['rps'] / t['rps']:.1f}x |")
    cpu_rows = [(mode, ours[mode][10].get("cpu_ms"), official[mode][10].get("cpu_ms"))
                for mode in ("wait", "stream") if 10 in ours[mode]]
    if cpu_rows:
        lines += ["", "## CPU per run at 10 clients, by process (ms)", "",
                  "What bounds runs/s on a small machine: every process a run goes through, summed over the "
                  "timed part and divided by its runs (the bench client's own share is listed apart).", "",
                  "| call | ours: by process | ours: servers' total | official: total |", "| --- | --- | --- | --- |"]
        for mode, mine, theirs in cpu_rows:
            parts = ", ".join(f"{kind} {ms:.1f}" for kind, ms in (mine or {}).items() if ms >= 0.05)
            ours_total = sum(ms for kind, ms in (mine or {}).items() if kind != "bench client")
            theirs_total = sum(ms for kind, ms in (theirs or {}).items() if kind != "bench client")
            lines.append(f"| runs.{mode} | {parts} | {ours_total:.1f} | {theirs_total:.1f} |")
    lines += ["", "## CRUD latency (one client)", "", "| call | ours p50 / p95 ms | official p50 / p95 ms |",
              "| --- | --- | --- |"]
    for name, row in ours["crud"].items():
        theirs = official["crud"][name]
        lines.append(f"| {name} | {row['p50']:.1f} / {row['p95']:.1f} | {theirs['p50']:.1f} / {theirs['p95']:.1f} |")
    gap = ours["wait"][results["clients"][0]]["p50"] - floor[results["clients"][0]]["p50"]
    ten = 10 if 10 in results["clients"] else results["clients"][-1]
    lines += [
        "",
        "## Against the targets",
        "",
        f"- runs.wait p50 at 1 client is {gap:.1f} ms above the in-process floor (target: within 5 ms).",
        f"- At {ten} clients ours makes {ours['wait'][ten]['rps'] / official['wait'][ten]['rps']:.1f}x the official "
        f"server's runs.wait per second and {ours['stream'][ten]['rps'] / official['stream'][ten]['rps']:.1f}x its "
        "runs.stream (target: at least 10x).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 32])
    parser.add_argument("--runs-per-client", type=int, default=10)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--max-ongoing-requests", type=int, default=None,
                        help="deploy ours with this Serve max_ongoing_requests (default: as build_app does)")
    args = parser.parse_args()
    results = asyncio.run(run(args.clients, args.runs_per_client, args.max_ongoing_requests))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    # The hand-written reading of the figures (from NOTES_HEADING on) survives a rerun.
    old = args.report.read_text() if args.report.exists() else ""
    notes = old[old.index(NOTES_HEADING):] if NOTES_HEADING in old else ""
    args.report.write_text(render(results) + ("\n" + notes if notes else ""))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
