"""Many watchers and many agents: 500 thread watchers (``threads.join_stream``) and 50 agents.

    .venv/bin/python bench/watchers.py [--threads 50] [--per-thread 10] [--rounds 3] [--agents 50]

It starts its own embedded Postgres, a local Ray with the API's ingress, the whole fabric and the
Serve app in a temporary folder, then:

1. **Watchers.** ``threads × per-thread`` watchers, each ``client.threads.join_stream`` of the
   official langgraph-sdk on one of the threads. Probe runs on every thread until each watcher
   has seen one whole (a watcher that joins after a run ended does not get it); the RSS of every process of the system is read with
   all of them idle, against the same figure before they connected: the memory per idle watcher.
   Then ``rounds`` more runs on every thread: every watcher must see every run's start, its
   ``values`` and its end (stream modes ``lifecycle`` and ``run_modes``, counted per watcher).
2. **Agents.** ``agents`` agents spawned through the operator API (``POST /fleet/agents``; the
   deterministic script brain, so the figure is the fabric's, not a model's), one task delegated
   to each, by id; a watcher of the event log (``GET /events/stream``, the operator API's SSE)
   must see every task's ``task_result``, and every task must end ``succeeded``.

Writes bench/reports/watchers.md with the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.peers import GRAPH_FILE, GRAPH_ID, fabric_system  # noqa: E402

REPORT = ROOT / "bench" / "reports" / "watchers.md"
NOTES_HEADING = "## Notes by hand"


POSTGRES_PID: list[int] = []  # the bench's own Postgres (its postmaster), set once it runs


def system_rss_mb() -> dict[str, float]:
    """RSS of the system's processes by role: the API replica, Serve's proxy (or HAProxy), the
    agents, the other Ray processes, Postgres. Only this bench's own processes: its Ray (started
    by this process, so its descendants) and its Postgres, never another program's on the machine."""
    procs = psutil.Process().children(recursive=True)
    for pid in POSTGRES_PID:
        with contextlib.suppress(psutil.Error):
            postmaster = psutil.Process(pid)
            procs += [postmaster, *postmaster.children(recursive=True)]
    roles: dict[str, float] = defaultdict(float)
    for proc in procs:
        try:
            cmd = " ".join(proc.cmdline())
            rss = proc.memory_info().rss / 2**20
            name = proc.name()
        except psutil.Error:
            continue
        if "ServeReplica:quadracode" in cmd:
            roles["API replica"] += rss
        elif "ProxyActor" in cmd or name == "haproxy":
            roles["Serve ingress"] += rss
        elif cmd.startswith("ray::AgentActor"):
            roles["agents"] += rss
        elif proc.pid in POSTGRES_PID or name.startswith("postgres"):
            roles["postgres"] += rss
        else:
            roles["Ray (GCS, raylet, other actors)"] += rss
    return dict(roles)


async def _until(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


class Stalled(RuntimeError):
    """What was awaited stopped coming: the bench reports it instead of waiting out its deadline."""


async def until_complete(progress, stalled_after_s: float, deadline_s: float, what: str) -> None:
    """Wait until ``progress()`` returns (done, total); raise ``Stalled`` as soon as ``done`` has not
    moved for ``stalled_after_s`` (a missing event never comes, so waiting the whole ``deadline_s``
    for it only hides it), or at ``deadline_s``."""
    start = last_change = time.monotonic()
    last = -1
    while True:
        done, total = await progress()
        now = time.monotonic()
        if done >= total:
            return
        if done != last:
            last, last_change = done, now
        if now - last_change > stalled_after_s:
            raise Stalled(f"{what}: {done} of {total}, none more in the last {stalled_after_s:.0f} s")
        if now - start > deadline_s:
            raise Stalled(f"{what}: {done} of {total} after {deadline_s:.0f} s")
        await asyncio.sleep(0.2)


class Watcher:
    """One ``join_stream`` of a thread; what it saw of each run: its start (``metadata`` with the
    run id), its ``values`` and its end (``run_done``). Runs of one thread do not overlap here."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.current: str | None = None

    async def watch(self, client, thread_id: str) -> None:
        async for part in await client.threads.join_stream(thread_id, stream_mode=["lifecycle", "run_modes"]):
            data = part.data if isinstance(part.data, dict) else {}
            if part.event == "metadata" and data.get("status") == "run_done":
                self.seen[data["run_id"]].add("done")
            elif part.event == "metadata" and data.get("run_id"):
                self.current = data["run_id"]
                self.seen[self.current].add("start")
            elif part.event == "values" and self.current:
                self.seen[self.current].add("values")


EVENTS_PER_RUN = {"start", "values", "done"}


async def watchers_part(url: str, threads: int, per_thread: int, rounds: int) -> dict:
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=600)
    thread_ids = [(await client.threads.create())["thread_id"] for _ in range(threads)]
    watchers = [Watcher() for _ in range(threads * per_thread)]

    async def run_everywhere() -> list[str]:
        runs = await asyncio.gather(*(client.runs.create(t, GRAPH_ID, input={"n": 0}) for t in thread_ids))
        await asyncio.gather(*(client.runs.join(t, r["run_id"]) for t, r in zip(thread_ids, runs, strict=True)))
        return [r["run_id"] for r in runs]

    await run_everywhere()  # warm-up, so the baseline has seen a run on every thread too
    await asyncio.sleep(5)
    rss_before = system_rss_mb()
    # One client per thread's watchers, as separate programs would have: an httpx client holds at
    # most 100 connections, and a watcher keeps its own open.
    watcher_clients = [get_client(url=url, timeout=600) for _ in range(threads)]
    tasks = [asyncio.create_task(w.watch(watcher_clients[i % threads], thread_ids[i % threads]))
             for i, w in enumerate(watchers)]

    def delivered(run_ids: list[str]) -> int:
        return sum(len(EVENTS_PER_RUN - w.seen.get(run_ids[i % threads], set())) for i, w in enumerate(watchers))

    started = time.monotonic()
    # A watcher that joins after a run ended does not get that run (the official server's
    # join_stream neither): probe runs until every watcher has seen one whole, i.e. is connected.
    def connected() -> int:
        for task in tasks:  # a watcher that failed fails the bench, it is not a missing event
            if task.done():
                task.result()
        return sum(1 for w in watchers if any(events >= EVENTS_PER_RUN for events in w.seen.values()))

    probes = 0
    while connected() < len(watchers):
        if probes == 30:
            raise RuntimeError(f"after {probes} probe runs per thread only {connected()} of {len(watchers)} "
                               "watchers saw a whole run")
        probe = await run_everywhere()
        probes += 1

        async def probe_seen(ids=probe) -> bool:
            return all(EVENTS_PER_RUN <= w.seen.get(ids[i % threads], set()) or
                       not any(events >= EVENTS_PER_RUN for events in w.seen.values())
                       for i, w in enumerate(watchers))
        with contextlib.suppress(RuntimeError):
            await _until(probe_seen, 30, "the connected watchers to see the probe run")
    connect_s = time.monotonic() - started
    await asyncio.sleep(5)  # settle, so the RSS read is of idle watchers, not of a run's garbage
    rss_idle = system_rss_mb()
    missing = 0
    round_s: list[float] = []
    stalls: list[str] = []
    per_round = len(watchers) * len(EVENTS_PER_RUN)
    for _ in range(rounds):
        t0 = time.monotonic()
        run_ids = await run_everywhere()


        async def progress(ids=run_ids) -> tuple[int, int]:
            return per_round - delivered(ids), per_round
        try:  # the runs have ended (joined): what a watcher has not seen within 20 s more is lost
            await until_complete(progress, 20, 120, "events of the round's runs seen by the watchers")
        except Stalled as exc:
            stalls.append(str(exc))
            print(f"STALLED: {exc}", flush=True)
        missing += delivered(run_ids)
        round_s.append(time.monotonic() - t0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    count = len(watchers)
    return {"watchers": count, "threads": threads, "rounds": rounds, "connect_s": connect_s, "probes": probes,
            "expected": count * rounds * len(EVENTS_PER_RUN), "missing": missing, "round_s": round_s, "stalls": stalls,
            "rss_before": rss_before, "rss_idle": rss_idle,
            "per_watcher_kb": (sum(rss_idle.values()) - sum(rss_before.values())) * 1024 / count,
            "per_watcher_serving_kb": sum(rss_idle.get(r, 0) - rss_before.get(r, 0) for r in SERVING) * 1024 / count}


SERVING = ("API replica", "Serve ingress")  # where a watcher's connection and follower live


async def agents_part(url: str, orchestrator, agents: int) -> dict:
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=600)
    thread_id = (await client.threads.create())["thread_id"]
    results: dict[str, str] = {}
    streaming = asyncio.Event()

    async def watch_events() -> None:
        async with httpx.AsyncClient(timeout=None) as http, http.stream(
                "GET", f"{url}/events/stream", params={"kind": "task_result", "heartbeat_s": 1}) as response:
            response.raise_for_status()
            streaming.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    payload = event.get("payload") or {}
                    if payload.get("task_id"):
                        results[payload["task_id"]] = payload.get("status", "?")

    watcher = asyncio.create_task(watch_events())
    await asyncio.wait_for(streaming.wait(), 120)
    rss_before = system_rss_mb()
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=600) as http:
        spawned = await asyncio.gather(*(http.post(f"{url}/fleet/agents", json={"kind": "bench"})
                                         for _ in range(agents)))
    agent_ids = [r.json()["agent_id"] for r in spawned if r.status_code == 201]
    spawn_s = time.monotonic() - t0
    refused = [f"{r.status_code} {r.text[:200]}" for r in spawned if r.status_code != 201]
    rss_agents = system_rss_mb()
    t1 = time.monotonic()
    tasks = await asyncio.gather(*(orchestrator.delegate.remote(f"echo from {agent_id}", thread_id, agent_id)
                                   for agent_id in agent_ids))
    task_ids = {t.task_id for t in tasks}

    settled_at: dict[str, float] = {}  # task -> when Postgres first showed it ended, its result not yet seen

    async def progress() -> tuple[int, int]:
        """Results seen on the stream. A task that ended in Postgres more than 60 s ago (past the
        event bus's 30 s reconcile sweep) without its task_result on the stream is a lost event:
        stop there instead of waiting out the deadline."""
        now = time.monotonic()
        if now - checked[0] >= 5:  # Postgres asked at most every 5 s
            checked[0] = now
            await settle(now)
        lost = sorted(t for t in task_ids - results.keys() if now - settled_at.get(t, now) > 60)
        if lost:
            raise Stalled(f"{len(lost)} task(s) ended in Postgres over 60 s ago but their task_result never "
                          f"reached GET /events/stream: {', '.join(lost[:5])}")
        return len(task_ids & results.keys()), len(task_ids)

    checked = [0.0]

    async def settle(now: float) -> None:
        for task_id in task_ids - results.keys():
            if task_id not in settled_at:
                info = await orchestrator.task_status.remote(task_id)
                if info.status in ("succeeded", "failed", "cancelled"):
                    settled_at[task_id] = now

    stall = None
    try:  # agents lost to missed heartbeats are replaced and their tasks redone: minutes, not seconds
        await until_complete(progress, 180, 900, "task_result events on GET /events/stream")
    except Stalled as exc:
        stall = str(exc)
        print(f"STALLED: {exc}", flush=True)
    tasks_s = time.monotonic() - t1
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    statuses = [results.get(task_id, "not delivered") for task_id in task_ids]
    return {"agents": agents, "spawned": len(agent_ids), "refused": refused, "spawn_s": spawn_s, "tasks_s": tasks_s,
            "delivered": sum(1 for s in statuses if s != "not delivered"),
            "succeeded": statuses.count("succeeded"), "stall": stall, "rss_before": rss_before, "rss_agents": rss_agents}


def _rss_table(columns: list[tuple[str, dict[str, float]]]) -> list[str]:
    roles = sorted({role for _, figures in columns for role in figures})
    lines = ["| process | " + " | ".join(name for name, _ in columns) + " |",
             "| --- | " + " | ".join("---" for _ in columns) + " |"]
    for role in roles + ["total"]:
        cells = [f"{(sum(f.values()) if role == 'total' else f.get(role, 0.0)):.0f}" for _, f in columns]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    return lines


def render(result: dict, args: argparse.Namespace) -> str:
    w, a = result["watchers"], result["agents"]
    lines = [
        "# Many watchers and many agents", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB); load average before {result['load_before']:.1f}, "
        f"after {result['load_after']:.1f}; Serve ingress `{args.ingress}`. Command: `.venv/bin/python "
        f"bench/watchers.py --threads {args.threads} --per-thread {args.per_thread} --rounds {args.rounds} "
        f"--agents {args.agents} --ingress {args.ingress}`.", "",
        "## Thread watchers (`client.threads.join_stream`, official langgraph-sdk)", "",
        f"{w['watchers']} watchers on {w['threads']} threads; all connected (each had seen a whole run) after "
        f"{w['connect_s']:.1f} s and {w['probes']} probe runs per thread. Then {w['rounds']} rounds of one run per thread: "
        f"**{w['expected'] - w['missing']} of {w['expected']} events delivered** (each watcher: each run's "
        f"start and end `metadata` and its `values`), {w['missing']} missing. Seconds per round (runs created, joined, "
        f"and every watcher served): {', '.join(f'{s:.1f}' for s in w['round_s'])}.", "",
        *([f"**Stalled**: {'; '.join(w['stalls'])}.", ""] if w.get("stalls") else []),
        f"**Memory per idle watcher: {w['per_watcher_serving_kb']:.0f} KiB** in the API replica and the Serve "
        f"ingress, where a watcher's connection and its follower live; {w['per_watcher_kb']:.0f} KiB over every "
        f"process of the system (their RSS with the watchers idle, minus before they connected, after a warm-up "
        f"run on every thread, divided by {w['watchers']}; the wider figure includes Postgres' and the run "
        "executors' growth from the first run the watchers saw):", "",
        *_rss_table([("before, MiB", w["rss_before"]), (f"{w['watchers']} idle watchers, MiB", w["rss_idle"])]), "",
        "## Agents", "",
        f"{a['spawned']} of {a['agents']} agents spawned through `POST /fleet/agents` in {a['spawn_s']:.1f} s"
        + (f" (refused: {'; '.join(a['refused'][:3])})" if a["refused"] else "") + "; one task delegated to "
        f"each by id: **{a['delivered']} of {a['spawned']} `task_result` events delivered** on `GET "
        f"/events/stream`, {a['succeeded']} succeeded, all within {a['tasks_s']:.1f} s.", "",
        *([f"**Stalled**: {a['stall']}.", ""] if a.get("stall") else []),
        *_rss_table([("before, MiB", a["rss_before"]), (f"{a['spawned']} agents, MiB", a["rss_agents"])]), "",
        f"Memory per agent: {(sum(a['rss_agents'].values()) - sum(a['rss_before'].values())) / max(1, a['spawned']):.0f}"
        " MiB (an agent is a Ray worker process with its Python runtime, its graph and its clients).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--per-thread", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    from actors.common import ORCHESTRATOR, get_actor

    overrides = {"graphs": {GRAPH_ID: f"{GRAPH_FILE}:graph"}, "agent_brain": "actors.brains:build_script_brain",
                 "fleet_max_agents": args.agents + 2, "agent_num_cpus": 0.01, "model": "scripted:default"}
    result: dict = {"load_before": os.getloadavg()[0]}
    with fabric_system("watchers", overrides, args.ingress) as (url, settings, postmaster):
        POSTGRES_PID.append(postmaster)
        result["watchers"] = asyncio.run(watchers_part(url, args.threads, args.per_thread, args.rounds))
        print(f"watchers: {result['watchers']['missing']} missing, "
              f"{result['watchers']['per_watcher_serving_kb']:.0f} KiB each", flush=True)
        result["agents"] = asyncio.run(agents_part(url, get_actor(settings, ORCHESTRATOR), args.agents))
        print(f"agents: {result['agents']['delivered']}/{result['agents']['spawned']} delivered", flush=True)
        result["load_after"] = os.getloadavg()[0]
    # The hand-written notes (from NOTES_HEADING on) survive a rerun.
    previous = args.report.read_text() if args.report.exists() else ""
    notes = previous[previous.index(NOTES_HEADING):] if NOTES_HEADING in previous else ""
    args.report.write_text(render(result, args) + ("\n" + notes if notes else ""))
    print(f"wrote {args.report}")
    w, a = result["watchers"], result["agents"]
    if w["missing"] or a["delivered"] < a["agents"]:
        sys.exit(f"not every event delivered: {w['missing']} watcher events missing, "
                 f"{a['delivered']} of {a['agents']} task results (see {args.report})")


if __name__ == "__main__":
    main()
