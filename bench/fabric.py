"""Benchmark of the actor fabric: envelope round trips, agent spawn time and agent memory.

    .venv/bin/python bench/fabric.py                  # 1, 10, 25, 50 agents -> bench/reports/fabric.md
    .venv/bin/python bench/fabric.py --agents 1 5 --probes 100

It starts its own local Ray and an embedded Postgres in a temporary folder (never touching a
running system), starts the fabric with ``ensure_system`` and, for each fleet size:

- spawns agents up to that size, timing each ``fleet.spawn`` (actor start + registration);
- measures round trips orchestrator -> agent -> orchestrator through the fabric (``ping``
  delivered to the agent, ``pong`` delivered back and durably accepted by the orchestrator,
  then handled in its lane), sequentially round-robin over the agents, plus the floor: a
  bare Ray actor call orchestrator -> agent from the same process;
- measures concurrent round trips (one probe stream per agent at once) for throughput;
- reads the resident memory (RSS) of every agent's worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run(sizes: list[int], probes: int) -> dict:
    import ray

    from actors.bootstrap import ensure_system_async, shutdown_system
    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres, prepare_database

    # Its own folder (not /tmp/qr-*, which other test runs clean up).
    root = Path(tempfile.mkdtemp(prefix="fabric-bench-", dir="/var/tmp"))
    pg = EmbeddedPostgres(root / "pg", database="bench")
    url = pg.start()
    settings = Settings(_env_file=None, database_url=url, data_dir=root, actor_name_prefix="bench-",
                        fleet_max_agents=max(sizes), agent_num_cpus=0.01,
                        workspace_client_factory="tests.actors.fakes:memory_workspace")
    prepare_database(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(address="local", namespace=NAMESPACE, num_cpus=max(4, os.cpu_count() or 1),
                 include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    results: dict = {"sizes": [], "probes": probes, "load_before": os.getloadavg()}
    try:
        started = time.perf_counter()
        system = await ensure_system_async(settings)
        results["ensure_system_s"] = time.perf_counter() - started
        agents: list = []
        spawn_ms: list[float] = []
        for size in sizes:
            while len(agents) < size:
                t0 = time.perf_counter()
                info = await system.fleet.spawn.remote({"kind": "bench"})
                spawn_ms.append((time.perf_counter() - t0) * 1000)
                agents.append(info.agent_id)
            ids = agents[:size]
            for agent_id in ids:  # warm each path once
                await system.orchestrator.probe.remote(agent_id, 3)
            fabric: list[float] = []
            bare: list[float] = []
            for i in range(probes):
                agent_id = ids[i % size]
                fabric += await system.orchestrator.probe.remote(agent_id, 1)
                bare += await system.orchestrator.probe_bare.remote(agent_id, 1)
            per_agent = max(1, probes // size)
            t0 = time.perf_counter()
            concurrent = await asyncio.gather(*(system.orchestrator.probe.remote(a, per_agent) for a in ids))
            wall = time.perf_counter() - t0
            flat = [d for ds in concurrent for d in ds]
            handles = [ray.get_actor(settings.actor_name_prefix + "agent:" + a, namespace=NAMESPACE) for a in ids]
            pids = await asyncio.gather(*(h.pid.remote() for h in handles))
            rss = [rss_mib(pid) for pid in pids]
            row = {
                "agents": size,
                "fabric_p50": percentile(fabric, 50), "fabric_p95": percentile(fabric, 95),
                "bare_p50": percentile(bare, 50), "bare_p95": percentile(bare, 95),
                "conc_p50": percentile(flat, 50), "conc_p95": percentile(flat, 95),
                "conc_rps": len(flat) / wall,
                "spawn_p50": percentile(spawn_ms, 50), "spawn_p95": percentile(spawn_ms, 95),
                "spawn_last": spawn_ms[-1],
                "rss_mean": statistics.fmean(rss), "rss_max": max(rss),
            }
            results["sizes"].append(row)
            print(f"{size:3d} agents: fabric p50 {row['fabric_p50']:.2f} ms p95 {row['fabric_p95']:.2f} ms | "
                  f"bare p50 {row['bare_p50']:.2f} ms | concurrent p50 {row['conc_p50']:.2f} ms, "
                  f"{row['conc_rps']:.0f} rt/s | spawn p50 {row['spawn_p50']:.0f} ms | "
                  f"RSS {row['rss_mean']:.0f} MiB/agent", flush=True)
        results["spawn_all_ms"] = spawn_ms
        results["live"] = (await system.fleet.stats.remote())["live"]
        results["load_after"] = os.getloadavg()
    finally:
        shutdown_system(settings)
        ray.shutdown()
        pg.stop()
    return results


def report(results: dict, path: Path) -> None:
    rows = results["sizes"]
    lines = [
        "# Actor fabric benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs, shared with other "
        f"work: load average {results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after), "
        f"Python {platform.python_version()}; `bench/fabric.py`, {results['probes']} sequential probes per "
        "fleet size. Local Ray, embedded Postgres (unix socket), the fabric's default "
        "`fabric_synchronous_commit=false`.",
        "",
        "**Round trip** = orchestrator sends a `ping` envelope to an agent (`deliver`, accepted in the agent's "
        "memory inbox, handled in its lane), the agent sends `pong` back (`deliver` on the orchestrator: written "
        "to `qr_deliveries` in Postgres before it is acknowledged, then handled in its lane, which resolves the "
        "probe). **Bare** = one plain Ray actor call orchestrator -> agent from the same process: the floor. "
        "**Concurrent** = one probe stream per agent at once.",
        "",
        "| agents | round trip p50 (ms) | p95 (ms) | bare call p50 (ms) | p95 (ms) | concurrent p50 (ms) | p95 (ms) "
        "| concurrent round trips/s | spawn p50 (ms) | spawn p95 (ms) | RSS per agent, mean (MiB) | max (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['agents']} | {r['fabric_p50']:.2f} | {r['fabric_p95']:.2f} | {r['bare_p50']:.2f} | "
            f"{r['bare_p95']:.2f} | {r['conc_p50']:.2f} | {r['conc_p95']:.2f} | {r['conc_rps']:.0f} | "
            f"{r['spawn_p50']:.0f} | {r['spawn_p95']:.0f} | {r['rss_mean']:.0f} | {r['rss_max']:.0f} |")
    top = rows[-1]
    lines += [
        "",
        f"- `ensure_system` (four singletons created and ready): {results['ensure_system_s']:.1f} s.",
        f"- Live agents at the end: {results['live']} (target: 50).",
        f"- Target round trip p50 <= 2 ms: {'met' if rows[0]['fabric_p50'] <= 2 else 'NOT met'} with 1 agent "
        f"({rows[0]['fabric_p50']:.2f} ms), {'met' if top['fabric_p50'] <= 2 else 'NOT met'} with "
        f"{top['agents']} ({top['fabric_p50']:.2f} ms).",
        "- Spawn time is one `fleet.spawn` call: a new Ray worker process, the agent actor's start and its "
        "registration with the registry; spawns are sequential here.",
        "- RSS is each agent worker's resident set from /proc (a Ray worker with the fabric imported).",
        "",
        "## Reading the figures",
        "",
        f"- A fabric round trip is two one-way actor messages plus one Postgres insert (the orchestrator's durable "
        f"acceptance) and two lane hand-offs; the floor here, one bare actor call (also two one-way messages), "
        f"is {rows[0]['bare_p50']:.2f} ms p50 with 1 agent: the round trip costs "
        f"{rows[0]['fabric_p50'] / rows[0]['bare_p50']:.1f}x the bare call. The 2 ms target presumes an idle "
        "machine, where a Ray actor call is a few hundred microseconds; with a load average well above the core "
        "count every process hop waits for a CPU; the round trip crosses three processes (orchestrator, agent, "
        "the Postgres backend) and the event bus's publishes compete with them for the same two cores.",
        "- Concurrent throughput is bounded by the single orchestrator process (it sends every ping, accepts and "
        "handles every pong with two Postgres statements, and publishes to the bus); concurrent latency is that "
        "bound divided among the streams, not a per-message cost.",
        "- An agent's memory is a Ray worker process: the Python interpreter, Ray's core worker and the imported "
        "fabric (pydantic, psycopg, langgraph's checkpoint modules); the agent's own state is small.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 10, 25, 50])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "reports" / "fabric.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report from a previous run's .json")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = asyncio.run(run(sorted(args.agents), args.probes))
        args.report.with_suffix(".json").write_text(json.dumps(results, indent=1))
    report(results, args.report)


if __name__ == "__main__":
    main()
