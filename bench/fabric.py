"""Benchmark of the actor fabric: envelope round trips, agent spawn time and agent memory.

    .venv/bin/python bench/fabric.py                  # 1, 10, 25, 50 agents -> bench/reports/fabric.md (~3 min)
    .venv/bin/python bench/fabric.py --quick          # 1 and 10 agents, 200 probes -> /tmp/fabric-quick.md
    .venv/bin/python bench/fabric.py --agents 1 5 --probes 100

It starts its own local Ray and an embedded Postgres in a temporary folder (never touching a
running system), starts the fabric with ``ensure_system`` and, for each fleet size:

- spawns agents up to that size, timing each ``fleet.spawn`` (actor start + registration);
- measures round trips orchestrator -> agent -> orchestrator through the fabric (``ping``
  delivered to the agent, ``pong`` delivered back and durably accepted by the orchestrator,
  then handled in its lane), sequentially round-robin over the agents, each with its segments
  (``actors/probes.py``), plus the floor: a bare Ray actor call orchestrator -> agent from the
  same process;
- measures concurrent round trips (one probe stream per agent at once) for throughput;
- reads the resident memory (RSS) of every agent's worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
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


async def insert_round_trips(url: str, count: int = 200) -> dict[str, float]:
    """p50 (ms) of the orchestrator's acceptance statement from this process: back to back, and
    after 3 ms idle (the gap a sequential round trip leaves; the Postgres backend has gone to sleep)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    sql = ("INSERT INTO qr_deliveries (recipient, envelope_id, envelope) VALUES (%s, %s, %s) "
           "ON CONFLICT DO NOTHING RETURNING envelope_id")
    out = {}
    async with await psycopg.AsyncConnection.connect(make_conninfo(url, options="-c synchronous_commit=off"),
                                                     autocommit=True) as conn:
        for name, gap_s in (("hot", 0.0), ("after_idle", 0.003)):
            durations = []
            for i in range(count):
                if gap_s:
                    time.sleep(gap_s)  # a measured idle gap, not synchronisation
                t0 = time.perf_counter()
                await (await conn.execute(sql, ("bench-floor", f"{name}-{i}", "{}"))).fetchall()
                durations.append((time.perf_counter() - t0) * 1000)
            out[name] = percentile(durations, 50)
        await conn.execute("DELETE FROM qr_deliveries WHERE recipient = 'bench-floor'")
    return out


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


COMPARE_BLOCK = 25


async def compare_paths(system, settings, agent_id: str, probes: int) -> dict:
    """1 agent, in alternating blocks of probes: this fabric (same-node sockets) against a second fabric in the
    same Ray with the sockets off, where every envelope is a Ray actor call (as between nodes)."""
    from actors.bootstrap import ensure_system_async, shutdown_system
    from actors.probes import SEGMENTS

    ray_settings = settings.model_copy(update={"actor_name_prefix": "bench-raycalls-", "fabric_local_channel": False})
    ray_system = await ensure_system_async(ray_settings)
    try:
        ray_agent = (await ray_system.fleet.spawn.remote({"kind": "bench"})).agent_id
        await ray_system.orchestrator.probe.remote(ray_agent, 3)
        load = os.getloadavg()[0]
        paths: dict[str, list[dict[str, float]]] = {"sockets": [], "ray_calls": []}
        for start in range(0, probes, COMPARE_BLOCK):  # blocks: each path runs warm, one probe a call as above
            for _ in range(min(COMPARE_BLOCK, probes - start)):
                paths["sockets"] += await system.orchestrator.probe_segments.remote(agent_id, 1)
            for _ in range(min(COMPARE_BLOCK, probes - start)):
                paths["ray_calls"] += await ray_system.orchestrator.probe_segments.remote(ray_agent, 1)
        # Back to back: each ping leaves as the last pong is handled, so the previous round trip's
        # logging (bus publishes, the delivery's status update) runs alongside the next one.
        paths["sockets_back_to_back"] = await system.orchestrator.probe_segments.remote(agent_id, probes)
        paths["ray_calls_back_to_back"] = await ray_system.orchestrator.probe_segments.remote(ray_agent, probes)
    finally:
        shutdown_system(ray_settings)
    out: dict = {"load": load}
    for name, samples in paths.items():
        totals = [s["total_ms"] for s in samples]
        out[name] = {"p50": percentile(totals, 50), "p95": percentile(totals, 95),
                     "segments_p50": {k: percentile([s[k] for s in samples], 50) for k in SEGMENTS}}
    print(f"  1 agent, alternating blocks: sockets p50 {out['sockets']['p50']:.2f} ms, ray calls p50 "
          f"{out['ray_calls']['p50']:.2f} ms; back to back {out['sockets_back_to_back']['p50']:.2f} / "
          f"{out['ray_calls_back_to_back']['p50']:.2f} ms (load {load:.1f})", flush=True)
    return out


async def run(sizes: list[int], probes: int) -> dict:
    import ray

    from actors.bootstrap import ensure_system_async, shutdown_system
    from actors.probes import SEGMENTS
    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import EmbeddedPostgres, prepare_database

    # Its own folder (not /tmp/qr-*, which other test runs clean up).
    root = Path(tempfile.mkdtemp(prefix="fabric-bench-", dir="/var/tmp"))
    pg = EmbeddedPostgres(root / "pg", database="bench")
    url = pg.start()
    settings = Settings(_env_file=None, database_url=url, data_dir=root, actor_name_prefix="bench-",
                        fleet_max_agents=max(sizes), agent_num_cpus=0.01,
                        workspace_client_factory="quadracode_ray.testing:fake_workspace")
    prepare_database(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(address="local", namespace=NAMESPACE, num_cpus=max(4, os.cpu_count() or 1),
                 include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    results: dict = {"sizes": [], "probes": probes, "load_before": os.getloadavg()}
    try:
        results["insert_ms"] = await insert_round_trips(url)
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
            load = os.getloadavg()[0]
            samples: list[dict[str, float]] = []
            bare: list[float] = []
            for i in range(probes):
                agent_id = ids[i % size]
                samples += await system.orchestrator.probe_segments.remote(agent_id, 1)
                bare += await system.orchestrator.probe_bare.remote(agent_id, 1)
            fabric = [s["total_ms"] for s in samples]
            per_agent = max(1, probes // size)
            t0 = time.perf_counter()
            concurrent = await asyncio.gather(*(system.orchestrator.probe.remote(a, per_agent) for a in ids))
            wall = time.perf_counter() - t0
            flat = [d for ds in concurrent for d in ds]
            handles = [ray.get_actor(settings.actor_name_prefix + "agent:" + a, namespace=NAMESPACE) for a in ids]
            pids = await asyncio.gather(*(h.pid.remote() for h in handles))
            rss = [rss_mib(pid) for pid in pids]
            row = {
                "agents": size, "load": load,
                "segments_p50": {k: percentile([s[k] for s in samples], 50) for k in SEGMENTS},
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
                  f"RSS {row['rss_mean']:.0f} MiB/agent | load {load:.1f}", flush=True)
            print("            segments p50 (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in row["segments_p50"].items()),
                  flush=True)
        results["paths"] = await compare_paths(system, settings, agents[0], probes)
        results["spawn_all_ms"] = spawn_ms
        results["live"] = (await system.fleet.stats.remote())["live"]
        results["load_after"] = os.getloadavg()
    finally:
        shutdown_system(settings)
        ray.shutdown()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
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
        "`fabric_synchronous_commit=false`. Rerun: `.venv/bin/python bench/fabric.py` (about 4 minutes; it "
        "starts its own Ray and Postgres), or `--quick` (1 and 10 agents, to /tmp/fabric-quick.md) for a "
        "before/after check; run it on a quiet machine and look at the load average it records.",
        "",
        "**Round trip** = orchestrator sends a `ping` envelope to an agent (`deliver`, accepted in the agent's "
        "memory inbox, handled in its lane), the agent sends `pong` back (`deliver` on the orchestrator: written "
        "to `qr_deliveries` in Postgres before it is acknowledged, then handled in its lane, which resolves the "
        "probe). Both messages travel the way the fabric sends them: on one node, a frame on the recipient's Unix "
        "socket (`actors/local_channel.py`; the default), a Ray actor call otherwise. **Bare** = one plain Ray "
        "actor call orchestrator -> agent and its return from the same process (two messages, the floor of the "
        "Ray path). **Concurrent** = one probe stream per agent at once.",
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
    lines += [
        "",
        "**Where a round trip's time goes** (p50 of each segment, ms; stamps are `perf_counter_ns`, one clock "
        "for every process of this machine): *ping* = orchestrator sends -> the agent's handler runs (one "
        "message, the agent's acceptance, its lane hand-off); *agent* = the agent's handler until it sends the "
        "pong; *pong* = agent sends -> the orchestrator's `deliver` runs (one message); *accept* = `deliver` "
        "-> the orchestrator's handler (the durable insert in `qr_deliveries`, the lane hand-off). The segments' "
        "medians need not add up to the total's median.",
        "",
        "| agents | load avg | round trip p50 | ping | agent | pong | accept | bare call p50 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        seg = r.get("segments_p50") or {}
        cells = " | ".join(f"{seg[k]:.{3 if k == 'agent_ms' else 2}f}" if k in seg else "-" for k in ("ping_ms", "agent_ms", "pong_ms", "accept_ms"))
        load = f"{r['load']:.1f}" if "load" in r else "-"
        lines.append(f"| {r['agents']} | {load} | {r['fabric_p50']:.2f} | {cells} | {r['bare_p50']:.2f} |")
    top = rows[-1]
    lines += [
        "",
        f"- `ensure_system` (four singletons created and ready): {results['ensure_system_s']:.1f} s.",
        f"- Live agents at the end: {results['live']} (target: 50).",
        *paths_lines(results),
        f"- Target round trip p50 <= 2 ms: {'met' if rows[0]['fabric_p50'] <= 2 else 'NOT met'} with 1 agent "
        f"({rows[0]['fabric_p50']:.2f} ms), {'met' if top['fabric_p50'] <= 2 else 'NOT met'} with "
        f"{top['agents']} ({top['fabric_p50']:.2f} ms).",
        "- Spawn time is one `fleet.spawn` call: a new Ray worker process, the agent actor's start and its "
        "registration with the registry; spawns are sequential here.",
        "- RSS is each agent worker's resident set from /proc (a Ray worker with the fabric imported).",
        "",
        "## Reading the figures",
        "",
        *reading(results),
        "- Concurrent throughput is bounded by the single orchestrator process (it sends every ping, accepts and "
        "handles every pong, and publishes to the bus); the acceptances and status updates of concurrent "
        "deliveries share statements (group commit), and concurrent latency is that bound divided among the "
        "streams, not a per-message cost.",
        "- An agent's memory is a Ray worker process: the Python interpreter, Ray's core worker and the imported "
        "fabric (pydantic, psycopg, langgraph's checkpoint modules); the agent's own state is small.",
        "",
        *SESSION_NOTES,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


SESSION_NOTES = [
    "## How the round trip came under 2 ms (2026-11-21)",
    "",
    "- Through Ray actor calls the round trip was 3.35 ms p50 on a quiet machine (1 agent): two messages "
    "1.13 + 1.40 ms and the acceptance 0.82 ms. The floor of that path left almost no room: a bare Ray call "
    "and its return cost 1.3-1.4 ms here (caller's core worker, gRPC, callee's core worker, a hand-over to the "
    "actor's event-loop thread, and back), plus 0.3 ms for the idle insert: about 1.7 ms before any of the "
    "fabric's own work.",
    "- Tried on that path and not kept (A/B in blocks of 50 probes, load 7-14): no event-bus publish at all "
    "(3.40 against 3.89 ms; publishes stay: every envelope is logged once); publishes held back 5 ms to batch "
    "(an agent SIGKILLed inside those 5 ms lost its accepted envelope from the log, which "
    "`test_sigkilled_agent_task_goes_to_a_new_agent` caught); the bus at nice 10; the bus insert as one "
    "statement. Kept: the acceptance on a dedicated connection with group commit (throughput), publishes "
    "batched per event-loop turn (`actors/publisher.py`). Envelope pickling is 36 us out and 9 us in: not where "
    "the time goes.",
    "- What brought it under: envelopes between actors of one node travel as frames on the recipient's Unix "
    "socket, ~0.1 ms a request and answer between two processes here against ~1.3 ms for a Ray call. Same "
    "`deliver`, same acknowledgement after the durable insert, same de-duplication; a socket that is missing, "
    "refused or breaks mid-send makes the sender call through Ray, which also says whether the recipient died "
    "(`tests/actors/test_delivery_paths.py`; the core delivery tests run again with the sockets off in "
    "`tests/actors/test_delivery_over_ray.py`). Agents on other nodes of a cluster still get Ray calls.",
    "- Not done (not needed for the target): handling an envelope while its acceptance is written, which would "
    "take the insert (now the largest segment) off the path but needs de-duplication without asking Postgres.",
    "",
    "## The same code on two days (2026-11-21 and 2026-12-02)",
    "",
    "The figures above move with the VM more than with the code. The same fabric delivery code measured on "
    "two days, with no other work on the machine (the load is the bench's own Ray, Postgres and up to 50 "
    "agents, its load average in the column head; round trip p50 / bare Ray call p50, ms):",
    "",
    "| agents | 2026-11-21 (load 1.0-1.5) | 2026-12-02 (load 1.5-3.1) |",
    "| ---: | ---: | ---: |",
    "| 1 | 0.92 / 1.22 | 2.03 / 2.18 |",
    "| 10 | 1.09 / 1.54 | 2.46 / 2.73 |",
    "| 25 | 1.35 / 1.91 | 2.86 / 3.24 |",
    "| 50 | 1.41 / 1.98 | 3.00 / 4.21 |",
    "",
    "- On 2026-12-02 a bare Ray call and its return alone (2.18 ms with 1 agent) was above the 2 ms target, "
    "and every segment, the Postgres insert included (0.16 ms back to back against 0.07), took about twice "
    "as long: the VM was slower that day, not the fabric. The round trip stays below a bare Ray call at "
    "every fleet size on both days, which is what the sockets bought.",
    "- On a day like 2026-12-02 the next step is the one named above: handle an envelope while its "
    "acceptance is written (about 1 ms of the 2-3 ms that day), not before a design for de-duplication "
    "without asking Postgres that keeps a handler from running twice.",
    "",
]


def paths_lines(results: dict) -> list[str]:
    paths = results.get("paths")
    if not paths:
        return []
    sockets, ray_calls = paths["sockets"], paths["ray_calls"]
    lines = [
        f"- The two paths side by side (1 agent, alternating blocks of {COMPARE_BLOCK} probes, one a call, a second fabric "
        f"with `fabric_local_channel=false` in the same Ray, load {paths['load']:.1f}): same-node sockets "
        f"{sockets['p50']:.2f} ms p50 ({sockets['p95']:.2f} p95), Ray calls {ray_calls['p50']:.2f} ms p50 "
        f"({ray_calls['p95']:.2f} p95); the Ray path is what an agent on another node of a cluster gets "
        f"(plus the network). Segments p50, sockets / Ray calls: "
        + ", ".join(f"{k.removesuffix('_ms')} {sockets['segments_p50'][k]:.2f} / {ray_calls['segments_p50'][k]:.2f}"
                    for k in ("ping_ms", "pong_ms", "accept_ms")) + " ms.",
    ]
    if "sockets_back_to_back" in paths:
        b2b, ray_b2b = paths["sockets_back_to_back"], paths["ray_calls_back_to_back"]
        lines.append(
            f"- Back to back (each ping leaves as the previous pong is handled, {results['probes']} in one call, "
            f"1 agent): sockets {b2b['p50']:.2f} ms p50 ({b2b['p95']:.2f} p95), Ray calls {ray_b2b['p50']:.2f} ms "
            f"p50 ({ray_b2b['p95']:.2f} p95). Dearer than one probe a call because the previous round trip's "
            "logging (two publishes to the event bus and its insert, the delivery's status update) is still "
            "running on the same two vCPUs when the next one starts; the table's figure is a round trip on its "
            "own.")
    return lines


def reading(results: dict) -> list[str]:
    """What the 1-agent figures say about the 2 ms target: the segments against their floors."""
    one = results["sizes"][0]
    seg = one.get("segments_p50")
    insert = results.get("insert_ms")
    if not seg or not insert:
        return [f"- Round trip {one['fabric_p50']:.2f} ms against a bare call of {one['bare_p50']:.2f} ms."]
    messages = seg["ping_ms"] + seg["pong_ms"]
    lines = [
        f"- With 1 agent the round trip ({one['fabric_p50']:.2f} ms p50) is two socket frames, ping "
        f"{seg['ping_ms']:.2f} ms and pong {seg['pong_ms']:.2f} ms (together {messages:.2f} ms against "
        f"{one['bare_p50']:.2f} ms for a bare Ray call and its return, also two messages), the agent's own work "
        f"({seg['agent_ms'] * 1000:.0f} us) and the orchestrator's acceptance, {seg['accept_ms']:.2f} ms: its "
        "durable insert and the lane hand-off. The acceptance is now the largest segment.",
        f"- The acceptance is one Postgres statement on a connection of its own (no pool checkout): "
        f"{insert['hot']:.2f} ms back to back from this process, but {insert['after_idle']:.2f} ms after 3 ms "
        "idle, which is what a sequential round trip sees: the Postgres backend (like the agent and the "
        "orchestrator between messages) has gone to sleep, and waking a process on this 2-vCPU VM costs a few "
        "hundred microseconds; every message of a round trip pays such a wake-up.",
        f"- Through Ray calls the floor alone, a bare call ({one['bare_p50']:.2f} ms) plus an idle insert "
        f"({insert['after_idle']:.2f} ms), is {one['bare_p50'] + insert['after_idle']:.2f} ms, which "
        + (f"leaves {2 - one['bare_p50'] - insert['after_idle']:.2f} ms under 2 ms"
           if one['bare_p50'] + insert['after_idle'] < 2
           else f"is already {one['bare_p50'] + insert['after_idle'] - 2:.2f} ms over 2 ms before")
        + " for everything the fabric does around "
        "them (acknowledgement, publishes to the bus, lane hand-offs) on two vCPUs; on that path the round trip "
        + (f"measures {results['paths']['ray_calls']['p50']:.2f} ms (the comparison above)."
           if results.get("paths") else "measured 3.35 ms on a quiet machine."),
    ]
    many = results["sizes"][-1]
    if many is not one:
        lines.append(
            f"- With {many['agents']} agents probed round-robin each agent sleeps through {many['agents'] - 1} round "
            f"trips between two pings, so every message wakes a cold process: the bare Ray call is "
            f"{many['bare_p50']:.2f} ms there (against {one['bare_p50']:.2f} ms) and the round trip "
            f"{many['fabric_p50']:.2f} ms ({'within' if many['fabric_p50'] <= 2 else 'above'} the 2 ms target).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 10, 25, 50])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "reports" / "fabric.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report from a previous run's .json")
    parser.add_argument("--quick", action="store_true",
                        help="1 and 10 agents, 200 probes, report to /tmp/fabric-quick.md (a before/after check)")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.probes, args.report = [1, 10], 200, Path("/tmp/fabric-quick.md")
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = asyncio.run(run(sorted(args.agents), args.probes))
        args.report.with_suffix(".json").write_text(json.dumps(results, indent=1))
    report(results, args.report)


if __name__ == "__main__":
    main()
