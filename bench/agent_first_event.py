"""First streamed event of an agent run, with the fleet's warm pool and without it (cold: a spawn).

    .venv/bin/python bench/agent_first_event.py [--runs 10] [--cold-runs 4] [--warm 2]

It starts its own embedded Postgres, local Ray (with the API's ingress), the whole fabric with the
real agent graph, the scripted model and a real Docker sandbox, and the Serve app, all in a
temporary folder; each run is ``client.runs.stream`` of assistant ``agent`` on a new thread
through the official langgraph-sdk client, timed from the call to its first event and to its end.
Warm: before each run an idle agent waits (the pool refills between runs). Cold: before each run
every agent is killed and the pool is off, so the run's path spawns one (its workspace is started
already: the cold figure is the agent's spawn, not the container's). Writes
bench/reports/agent_first_event.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.peers import fabric_system  # noqa: E402

REPORT = ROOT / "bench" / "reports" / "agent_first_event.md"
REAL_PARTS = {
    "agent_brain": "quadracode_ray.graphs.agent:build_agent_graph",
    "workspace_client_factory": "actors.workspaces:sandbox_workspace_client",
    "model": "scripted:default",
    "sandbox_memory_mb": 512, "sandbox_cpus": 1.0, "sandbox_idle_stop_s": 0,
    "fleet_max_agents": 8,
}


async def _until(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


async def one_run(client) -> tuple[float, float]:
    thread_id = (await client.threads.create())["thread_id"]
    name = f"{uuid.uuid4().hex[:8]}.txt"
    started = time.perf_counter()
    first = None
    async for part in client.runs.stream(thread_id, "agent", stream_mode="values", input={"messages": [
            {"role": "user", "content": f"write {name} with content hi"}]}):
        first = first if first is not None else (time.perf_counter() - started) * 1000
        assert part.event != "error", part
    return first, (time.perf_counter() - started) * 1000


async def measure(url: str, fleet, runs: int, cold_runs: int, warm: int) -> dict:
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=300)
    out: dict = {"warm": [], "cold": []}

    async def warm_ready():
        stats = await fleet.stats.remote()
        return stats["warm"] >= 1 and stats["starting"] == 0

    await fleet.set_warm_target.remote(warm)
    await _until(warm_ready, 300, "the warm pool")
    await one_run(client)  # warm-up: graphs compiled, connections open
    for _ in range(runs):
        await _until(warm_ready, 300, "an idle warm agent")
        out["warm"].append(await one_run(client))
        print(f"  warm: first event {out['warm'][-1][0]:.0f} ms, run {out['warm'][-1][1]:.0f} ms", flush=True)
    await fleet.set_warm_target.remote(0)
    for _ in range(cold_runs):
        for agent in await fleet.list.remote():
            await fleet.kill.remote(agent.agent_id, True)
        out["cold"].append(await one_run(client))
        print(f"  cold: first event {out['cold'][-1][0]:.0f} ms, run {out['cold'][-1][1]:.0f} ms", flush=True)
    return out


def _row(label: str, samples: list[tuple[float, float]]) -> str:
    firsts, totals = [s[0] for s in samples], [s[1] for s in samples]
    worst = max(firsts) if firsts else float("nan")
    return (f"| {label} | {len(samples)} | {statistics.median(firsts):.0f} | {worst:.0f} | "
            f"{statistics.median(totals):.0f} |")


def render(result: dict, args: argparse.Namespace) -> str:
    warm_p50 = statistics.median(s[0] for s in result["warm"])
    return "\n".join([
        "# Agent runs: first streamed event with the warm pool and cold", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPUs); load average before "
        f"{result['load_before']:.1f}, after {result['load_after']:.1f}; Serve ingress `{result['ingress']}`. "
        f"Command: `.venv/bin/python bench/agent_first_event.py --runs {args.runs} --cold-runs {args.cold_runs} "
        f"--warm {args.warm}`.", "",
        "Each run: `client.runs.stream` of assistant `agent` (the real agent graph, the scripted model, a real "
        "Docker sandbox) on a new thread; ms from the call to the first event (the run's metadata) and to the "
        "stream's end.", "",
        "| path | runs | first event p50 ms | first event max ms | whole run p50 ms |", "| --- | --- | --- | --- | --- |",
        _row(f"warm pool ({args.warm} idle agents kept)", result["warm"]),
        _row("cold (no idle agent: the run's path spawns one)", result["cold"]), "",
        f"Target: first event <= 300 ms p50 with a warm pool: **{'met' if warm_p50 <= 300 else 'not met'}** "
        f"({warm_p50:.0f} ms).", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=4)
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    args = parser.parse_args()

    ingress = args.ingress
    from actors.common import FLEET, get_actor

    result: dict = {"load_before": os.getloadavg()[0], "ingress": ingress}
    with fabric_system("agent-first-event", REAL_PARTS, ingress) as (url, settings, _):
        result.update(asyncio.run(measure(url, get_actor(settings, FLEET), args.runs, args.cold_runs, args.warm)))
        result["load_after"] = os.getloadavg()[0]
    args.report.write_text(render(result, args))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
