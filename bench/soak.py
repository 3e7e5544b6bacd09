"""Soak: the whole system under mixed traffic for half an hour or more; nothing may leak or be lost.

    .venv/bin/python bench/soak.py                          # 45 min (15 of warm-up), >= 10,000 runs
    .venv/bin/python bench/soak.py --minutes 2 --min-runs 0 # a quick try

It starts its own system (tests/reliability/rig.py: an embedded Postgres, a local Ray, Serve, the
actor fabric with Docker sandboxes, the app with the test graphs), then 32 clients of the official
langgraph-sdk run a mix until both the time and the run count are reached: wait, stream,
background + join, cancel, interrupt and resume, store put/get/search, crons firing, and agent
tasks (the orchestrator delegating to a coder agent that writes and runs a file in its
workspace). Every 15 s it samples the RSS of every long-lived process (the API replica, the run
executors, the fabric's actors, Ray's own daemons, Postgres), Postgres connections, the objects
in Ray's object store and the machine's load average, and what tells a slower machine from more
work per call (bench/soak_probes.py: CPU of every process, CPU and memory speed probes, steal time,
Postgres' CPU and rows per call). At the end it audits Postgres: every run
it created reached a terminal status, every delegated task ended. Writes bench/reports/soak.md
and bench/reports/soak.png (latency p50/p99 per minute, RSS, connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import soak_probes  # noqa: E402  (after the path: run as a script)

REPORT = ROOT / "bench" / "reports" / "soak.md"
CHART = ROOT / "bench" / "reports" / "soak.png"
TERMINAL = ("success", "error", "interrupted", "timeout")
# Kind of call -> weight in the mix. Agent tasks are few: each spawns an agent and a container.
MIX = {"wait": 34, "stream": 28, "background_join": 18, "cancel": 3, "interrupt_resume": 6, "store": 10,
       "agent_task": 1}
SAMPLE_EVERY_S = 15.0
# The API replica's RSS levels off by minute 15 and the raylet's by minute 30 under this load
# (bench/reports/soak.md of 2026-12-04 18:31); growth is measured from here on.
WARM_UP_MINUTES = 15.0
NOTES_HEADING = "## Reading these figures"
GROWTH_LIMIT_PCT = 5.0  # RSS growth after warm-up a long-lived process may show (issue 19)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Traffic:
    """The clients' calls, each timed and counted by kind and outcome."""

    def __init__(self, client, started: float):
        self.client = client
        self.started = started
        self.latencies: dict[int, list[float]] = defaultdict(list)  # minute -> seconds
        self.kinds: dict[tuple[int, str], list[float]] = defaultdict(list)  # (minute, kind) -> seconds
        self.outcomes: Counter = Counter()
        self.errors: list[str] = []
        self.runs_created = 0
        self.agent_tasks = 0
        self._agent_slot = asyncio.Semaphore(1)  # one delegation at a time: the fleet is small

    async def call(self, kind: str, thread_id: str) -> None:
        began = time.monotonic()
        try:
            await getattr(self, kind)(thread_id)
            self.outcomes[(kind, "ok")] += 1
        except Exception as exc:  # counted and reported: the soak's point is to see them
            self.outcomes[(kind, type(exc).__name__)] += 1
            if len(self.errors) < 50:
                self.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
        minute, took = int((began - self.started) // 60), time.monotonic() - began
        self.latencies[minute].append(took)
        self.kinds[(minute, kind)].append(took)

    async def wait(self, thread_id: str) -> None:
        self.runs_created += 1
        values = await self.client.runs.wait(thread_id, "echo", input={"items": []})
        assert "__error__" not in values, values

    async def stream(self, thread_id: str) -> None:
        self.runs_created += 1
        events = [part.event async for part in self.client.runs.stream(
            thread_id, "echo", input={"items": []}, stream_mode=["values", "custom"])]
        assert "error" not in events and "values" in events, events

    async def background_join(self, thread_id: str) -> None:
        self.runs_created += 1
        run = await self.client.runs.create(thread_id, "echo", input={"items": []})
        await self.client.runs.join(thread_id, run["run_id"])
        status = (await self.client.runs.get(thread_id, run["run_id"]))["status"]
        assert status == "success", status

    async def cancel(self, thread_id: str) -> None:
        self.runs_created += 1
        run = await self.client.runs.create(thread_id, "echo", input={"items": [], "sleep": 30})
        await self.client.runs.cancel(thread_id, run["run_id"], wait=True)
        status = (await self.client.runs.get(thread_id, run["run_id"]))["status"]
        assert status == "interrupted", status

    async def interrupt_resume(self, thread_id: str) -> None:
        self.runs_created += 2
        await self.client.runs.wait(thread_id, "echo", input={"items": [], "ask": True})
        state = await self.client.threads.get_state(thread_id)
        assert state["next"] == ["asker"], state["next"]
        values = await self.client.runs.wait(thread_id, "echo", command={"resume": "yes"})
        assert values.get("answer") == "yes", values

    async def store(self, thread_id: str) -> None:
        namespace, key = ["soak", thread_id[:8]], uuid.uuid4().hex
        await self.client.store.put_item(namespace, key, {"n": key})
        item = await self.client.store.get_item(namespace, key)
        assert item and item["value"] == {"n": key}, item
        await self.client.store.search_items(namespace, limit=5)

    async def agent_task(self, _: str) -> None:
        async with self._agent_slot:
            thread_id = (await self.client.threads.create())["thread_id"]
            self.runs_created += 1
            self.agent_tasks += 1
            name = f"soak{uuid.uuid4().hex[:6]}.txt"
            values = await self.client.runs.wait(thread_id, "orchestrator", input={"messages": [
                {"role": "user", "content": f"delegate to a coder agent: write {name} with content hi and run cat {name}"}]})
            assert "Delegated to agent" in values["messages"][-1]["content"], values["messages"][-1]


async def client_loop(traffic: Traffic, until: float, enough, rng: random.Random) -> None:
    kinds, weights = zip(*MIX.items(), strict=True)
    thread_id = (await traffic.client.threads.create())["thread_id"]
    calls = 0
    while time.monotonic() < until or not enough():
        kind = rng.choices(kinds, weights)[0]
        if kind in ("cancel", "interrupt_resume"):  # on a thread of their own: no run may be left on it
            own = (await traffic.client.threads.create())["thread_id"]
            await traffic.call(kind, own)
        else:
            await traffic.call(kind, thread_id)
        calls += 1
        if calls % 50 == 0:  # a fresh thread now and then, so no history grows without bound
            thread_id = (await traffic.client.threads.create())["thread_id"]


# --- what is sampled ---------------------------------------------------------------------------
def long_lived_processes(settings, app_name: str) -> dict[str, int]:
    """name -> pid of the processes that must not grow: actors of the installation, the Serve
    replica and proxy, Ray's daemons of this cluster, the Postgres server."""
    import psutil
    import ray

    pids: dict[str, int] = {}
    from actors.run_executor import executor_names

    executors = set(executor_names(settings, settings.database_url))
    pids: dict[str, int] = {}
    # The GCS's actor table (no dashboard needed): this installation's actors and Serve's.
    for actor in ray._private.state.actors().values():
        name, cls = actor.get("Name") or "", actor.get("ActorClassName") or ""
        if actor.get("State") == "ALIVE" and actor.get("Pid") and (
                name.startswith(settings.actor_name_prefix) or name in executors
                or name.startswith(f"SERVE_REPLICA::{app_name}#") or "ProxyActor" in cls or "ServeController" in cls
                or "HAProxyManager" in cls):
            pids[name or cls] = actor["Pid"]
    # HAProxy mode: the haproxy of this cluster (its -f config is in this Ray's HAProxy folder;
    # each reload starts a new process, so the name follows the newest).
    folder = os.path.dirname(os.environ.get("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", ""))
    if folder and os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        newest = max((p for p in psutil.process_iter(["cmdline", "create_time"])
                      if any(folder in arg for arg in (p.info["cmdline"] or [])) and "-f" in (p.info["cmdline"] or [])),
                     key=lambda p: p.info["create_time"], default=None)
        if newest is not None:
            pids["haproxy"] = newest.pid
    node = ray._private.worker.global_worker.node
    for proc_name, infos in node.all_processes.items():
        for info in infos:
            if info.process is not None:
                pids[f"ray:{proc_name}"] = info.process.pid
    postmaster = settings_postmaster_pid(settings)
    if postmaster:
        pids["postgres"] = postmaster
    return {name: pid for name, pid in pids.items() if psutil.pid_exists(pid)}


def settings_postmaster_pid(settings) -> int | None:
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    pid_file = Path(data_dir) / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def postgres_connections(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                            "AND datname = current_database()").fetchone()[0]


def ray_objects() -> int:
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    for line in text.splitlines():  # "Plasma memory usage 0 MiB, 3 objects, 0.0% full, ..."
        if "objects" in line and "Plasma memory usage" in line:
            return int(line.split(",")[1].split()[0])
    return -1


async def event_bus_stats(settings) -> dict:
    """The bus's own account of what it holds (its ring, in envelopes and bytes; its watchers)."""
    import ray

    from actors.common import EVENTS, actor_name
    from quadracode_ray import NAMESPACE

    try:
        stats = await ray.get_actor(actor_name(settings, EVENTS), namespace=NAMESPACE).stats.remote()
    except Exception:  # noqa: BLE001 - a sample without it rather than none
        return {}
    return {key: stats.get(key) for key in ("ring", "ring_bytes", "watchers", "logged_total")}


async def sampler(settings, app_name: str, started: float, samples: list[dict], stop: asyncio.Event) -> None:
    processes: dict[str, int] = {}
    postgres_cpu: soak_probes.PostgresCpu | None = None
    while not stop.is_set():
        try:
            processes.update(await asyncio.to_thread(long_lived_processes, settings, app_name))
            if postgres_cpu is None and "postgres" in processes:
                postgres_cpu = soak_probes.PostgresCpu(processes["postgres"])
            samples.append({
                "t": time.monotonic() - started,
                "rss": {name: rss_mb(pid) for name, pid in processes.items()},
                "pg_connections": await asyncio.to_thread(postgres_connections, settings.database_url),
                "ray_objects": await asyncio.to_thread(ray_objects),
                "load": os.getloadavg()[0],
                "cpu": {name: soak_probes.cpu_seconds(pid) for name, pid in processes.items()},
                "client_cpu": soak_probes.own_cpu_seconds(),
                "machine_cpu": soak_probes.machine_busy_cpu_seconds(),
                "tables": await asyncio.to_thread(soak_probes.table_stats, settings.database_url),
                "gcs": await asyncio.to_thread(soak_probes.gcs_tables),
                "event_bus": await event_bus_stats(settings),
                "steal_cpu": soak_probes.steal_cpu_seconds(),
                "speed_ms": await asyncio.to_thread(soak_probes.cpu_speed_ms),
                "memory_ms": await asyncio.to_thread(soak_probes.memory_speed_ms),
                "pg_cpu": postgres_cpu.seconds() if postgres_cpu else float("nan"),
                "db": await asyncio.to_thread(soak_probes.database_work, settings.database_url),
            })
        except Exception:
            traceback.print_exc()
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            pass


# --- the audit -----------------------------------------------------------------------------------
def audit(settings, timeout_s: float = 300.0) -> dict:
    """Every run terminal (waiting for the last to end), every delegated task ended."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(settings.database_url) as conn:
            runs = dict(conn.execute("SELECT status, count(*) FROM qr_runs GROUP BY status").fetchall())
            tasks = dict(conn.execute("SELECT status, count(*) FROM qr_tasks GROUP BY status").fetchall())
        open_runs = sum(n for status, n in runs.items() if status not in TERMINAL)
        open_tasks = sum(n for status, n in tasks.items() if status in ("pending", "running"))
        if (not open_runs and not open_tasks) or time.monotonic() > deadline:
            return {"runs": runs, "tasks": tasks, "open_runs": open_runs, "open_tasks": open_tasks}
        time.sleep(2)


# --- the report ----------------------------------------------------------------------------------
def growth(samples: list[dict], name: str, since_s: float) -> tuple[float, float, float]:
    """(RSS at ``since_s``, RSS at the end, growth %) of one process."""
    warm = [s["rss"][name] for s in samples if s["t"] >= since_s and name in s["rss"]]
    if len(warm) < 2:
        warm = [s["rss"][name] for s in samples if name in s["rss"]]
    if not warm:
        return float("nan"), float("nan"), float("nan")
    # medians of the first and last three samples: one sample's GC timing is not a trend
    first, last = sorted(warm[:3])[len(warm[:3]) // 2], sorted(warm[-3:])[len(warm[-3:]) // 2]
    return first, last, (last - first) / first * 100 if first else float("nan")


def chart(traffic: Traffic, samples: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem, conns) = plt.subplots(3, 1, figsize=(10, 11))
    minutes = sorted(traffic.latencies)
    lat.plot(minutes, [percentile(traffic.latencies[m], 50) * 1000 for m in minutes], label="p50")
    lat.plot(minutes, [percentile(traffic.latencies[m], 99) * 1000 for m in minutes], label="p99")
    lat.set_yscale("log")
    lat.set(title="Latency of a call per minute (all kinds)", xlabel="minute", ylabel="ms")
    lat.legend()
    names = sorted({name for s in samples for name in s["rss"]})
    for name in names:
        points = [(s["t"] / 60, s["rss"][name]) for s in samples if name in s["rss"]]
        mem.plot([p[0] for p in points], [p[1] for p in points], label=name[:28])
    mem.set(title="RSS of the long-lived processes", xlabel="minute", ylabel="MiB")
    mem.legend(fontsize=6, ncol=3)
    conns.plot([s["t"] / 60 for s in samples], [s["pg_connections"] for s in samples], label="Postgres connections")
    conns.plot([s["t"] / 60 for s in samples], [s["ray_objects"] for s in samples], label="Ray objects")
    conns.plot([s["t"] / 60 for s in samples], [s["load"] for s in samples], label="load average (1 min)")
    conns.set(title="Postgres connections, Ray objects, machine load", xlabel="minute")
    conns.legend()
    fig.tight_layout()
    fig.savefig(CHART, dpi=90)


def report(args, traffic: Traffic, samples: list[dict], result: dict, elapsed: float, clients: int) -> str:
    total_calls = sum(traffic.outcomes.values())
    failed = {f"{kind} {outcome}": n for (kind, outcome), n in sorted(traffic.outcomes.items()) if outcome != "ok"}
    names = sorted({name for s in samples for name in s["rss"]})
    loads = [s["load"] for s in samples]
    conns = [s["pg_connections"] for s in samples]
    objects = [s["ray_objects"] for s in samples]
    lines = [
        "# Soak", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/soak.py --minutes {args.minutes} "
        f"--warm-up-minutes {args.warm_up_minutes:g} "
        f"--min-runs {args.min_runs} --clients {clients}"
        f"{f' --event-ring-size {args.event_ring_size}' if args.event_ring_size else ''}` (Serve ingress: {ingress()}) on {os.cpu_count()} cores"
        f"{JOINED_NOTE if args.ray_address else ''}: load average 1 min min/median/max "
        f"{min(loads, default=0):.1f} / {percentile(loads, 50):.1f} / {max(loads, default=0):.1f}"
        f"{'; ' + machine if (machine := soak_probes.machine_summary(samples)) else ''}.", "",
        "## Traffic", "",
        f"{elapsed / 60:.1f} minutes, {clients} concurrent clients (official langgraph-sdk), "
        f"{total_calls} calls, {traffic.runs_created} runs created by the clients, "
        f"{sum(result['runs'].values())} runs in Postgres (crons' included), {traffic.agent_tasks} agent tasks.", "",
        "| call | ok | failed |", "| --- | ---: | --- |",
    ]
    for kind in MIX:
        ok = traffic.outcomes[(kind, "ok")]
        bad = ", ".join(f"{outcome} {n}" for (k, outcome), n in traffic.outcomes.items() if k == kind and outcome != "ok")
        lines.append(f"| {kind} | {ok} | {bad or '0'} |")
    lines += ["", f"Failed calls: {sum(failed.values())} of {total_calls}."]
    if traffic.errors:
        lines += ["", "First errors seen:", ""] + [f"- `{error}`" for error in traffic.errors[:15]]
    lines += ["", "## Audit (Postgres, after the traffic)", "",
              f"- runs by status: {json.dumps(result['runs'])}; not terminal: **{result['open_runs']}**",
              f"- delegated tasks by status: {json.dumps(result['tasks'])}; not ended: **{result['open_tasks']}**", "",
              "## Growth", "",
              f"RSS after the {args.warm_up_minutes:g}-minute warm-up (median of the first three samples) and at "
              "the end (median of the last three), and the growth over the last 10 minutes alone (a "
              "buffer filling to its cap grows after warm-up, then stays flat):", "",
              "| process | after warm-up MiB | end MiB | growth | last 10 min |", "| --- | ---: | ---: | ---: | ---: |"]
    end_s = max((s["t"] for s in samples), default=0.0)
    over: list[str] = []
    for name in names:
        first, last, pct = growth(samples, name, since_s=args.warm_up_minutes * 60)
        recent = growth(samples, name, since_s=end_s - 600)[2]
        lines.append(f"| {name} | {first:.0f} | {last:.0f} | {pct:+.1f}% | {recent:+.1f}% |")
        if pct > GROWTH_LIMIT_PCT:
            over.append(f"{name} {pct:+.1f}% ({last - first:+.1f} MiB; last 10 min {recent:+.1f}%)")
    lines += ["", f"Over {GROWTH_LIMIT_PCT:.0f}% after warm-up (issue 19's bound): "
                  + ("; ".join(over) if over else "**none**") + "."]
    gcs = [s["gcs"] for s in samples if "gcs" in s]
    lines += ["", f"Postgres client connections min/max: {min(conns, default=0)} / {max(conns, default=0)}; "
                  f"Ray object-store objects min/max: {min(objects, default=0)} / {max(objects, default=0)}."]
    if gcs:
        lines += ["", "Records in Ray's GCS, first sample -> last: " + ", ".join(
            f"{key} {gcs[0][key]} -> {gcs[-1][key]}" for key in gcs[0]) + "."]
    bus = [s["event_bus"] for s in samples if s.get("event_bus")]
    if bus:
        lines += ["", "The event bus's own account, first sample -> last: " + ", ".join(
            f"{key} {bus[0][key]} -> {bus[-1][key]}" for key in bus[0]) + "."]
    lines += ["",
              "## Latency per minute (all calls)", "", "| minute | calls | p50 ms | p99 ms |", "| ---: | ---: | ---: | ---: |"]
    for minute in sorted(traffic.latencies):
        values = traffic.latencies[minute]
        lines.append(f"| {minute} | {len(values)} | {percentile(values, 50) * 1000:.0f} | "
                     f"{percentile(values, 99) * 1000:.0f} |")
    lines += ["", "![latency p50/p99 per minute, RSS, connections](soak.png)", ""]
    lines += soak_probes.diagnosis_lines(samples, traffic.latencies, traffic.kinds, percentile)
    return "\n".join(lines)


def ingress() -> str:
    return "HAProxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "Serve's Python proxy"


@contextlib.contextmanager
def joined_stack(ray_address: str, postgres_url: str, serve_port: int, settings_extra: dict):
    """An installation of its own (database, actors, Serve app) in a running Ray and Postgres,
    as tests/reliability/rig.py starts them (`python -m tests.reliability.rig`)."""
    import psycopg
    import ray

    from quadracode_ray import NAMESPACE
    from quadracode_ray.persistence.bootstrap import prepare_database
    from quadracode_ray.persistence.embedded import EmbeddedPostgres
    from tests.reliability import rig

    name = f"soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(EmbeddedPostgres.url_for(postgres_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = EmbeddedPostgres.url_for(postgres_url, name)
    ray.init(address=ray_address, namespace=NAMESPACE, logging_level="WARNING")
    settings = rig.settings_for(database_url, Path(tempfile.mkdtemp(prefix="qr-soak-")), **settings_extra)
    prepare_database(settings)
    try:
        url = rig.deploy(settings, serve_port, "soak")
        yield rig.Stack(url=url, app_name="soak", settings=settings, postgres=None)
    finally:
        rig.teardown(settings, "soak")


JOINED_NOTE = ("; the system was an installation of its own (database, actors, Serve app) in a Ray and "
               "Postgres started by `python -m tests.reliability.rig`, where the fuzzer also ran at times")
SOAK_SETTINGS = {"run_executors": 2, "fleet_max_agents": 4}


def soak_settings(args) -> dict:
    """The installation's settings: SOAK_SETTINGS, and a smaller event ring when asked for. At the
    default (10,000 envelopes) this traffic fills the event bus's ring in about 70 minutes, so a
    30-minute soak sees the bus grow toward its cap all along; a ring that fills within the
    warm-up shows whether anything else in the bus grows."""
    return {**SOAK_SETTINGS, **({"event_ring_size": args.event_ring_size} if args.event_ring_size else {})}


async def soak(args) -> None:
    from langgraph_sdk import get_client

    from tests.reliability.rig import local_stack

    settings_extra = soak_settings(args)
    stack_cm = (joined_stack(args.ray_address, args.postgres_url, args.serve_port, settings_extra)
                if args.ray_address else local_stack(**settings_extra))
    with stack_cm as stack:
        print(f"[soak] system up at {stack.url}", flush=True)
        client = get_client(url=stack.url, timeout=300)
        # crons: two, firing every minute on threads of their own for the whole soak
        for _ in range(2):
            cron_thread = (await client.threads.create())["thread_id"]
            await client.crons.create_for_thread(cron_thread, "echo", schedule="* * * * *", input={"items": []})
        started = time.monotonic()
        traffic = Traffic(client, started)
        samples: list[dict] = []
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler(stack.settings, stack.app_name, started, samples, stop))
        until = started + args.minutes * 60

        async def progress() -> None:
            while not stop.is_set():
                await asyncio.sleep(60)
                print(f"[soak] {(time.monotonic() - started) / 60:.0f} min, {traffic.runs_created} runs, "
                      f"{sum(n for (k, o), n in traffic.outcomes.items() if o != 'ok')} failed; "
                      f"last errors: {traffic.errors[-2:]}", flush=True)

        ticker = asyncio.create_task(progress())
        rng = random.Random(19)
        await asyncio.gather(*(client_loop(traffic, until, lambda: traffic.runs_created >= args.min_runs,
                                           random.Random(rng.random())) for _ in range(args.clients)))
        elapsed = time.monotonic() - started
        for cron in await client.crons.search(limit=10):
            await client.crons.delete(cron["cron_id"])
        result = await asyncio.to_thread(audit, stack.settings)
        stop.set()
        await sampling
        ticker.cancel()
        (REPORT.with_suffix(".json")).write_text(json.dumps({"samples": samples, "audit": result, "latency": {
            f"{minute} {kind}": [round(v, 4) for v in values] for (minute, kind), values in traffic.kinds.items()}},
            default=str))
        chart(traffic, samples)
        # The hand-written reading of earlier runs (from NOTES_HEADING on) survives a rerun.
        previous = REPORT.read_text() if REPORT.exists() else ""
        notes = previous[previous.index(NOTES_HEADING):] if NOTES_HEADING in previous else ""
        REPORT.write_text(report(args, traffic, samples, result, elapsed, args.clients) + ("\n" + notes if notes else ""))
        print(f"[soak] wrote {REPORT}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=45.0, help="of traffic, warm-up included")
    parser.add_argument("--warm-up-minutes", type=float, default=WARM_UP_MINUTES,
                        help="RSS growth is measured from here to the end")
    parser.add_argument("--min-runs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--event-ring-size", type=int, help="the event bus's ring, in envelopes (default: the "
                                                            "setting's, 10,000); smaller fills it within the warm-up")
    parser.add_argument("--ray-address", help="join this running Ray (with --postgres-url, --serve-port) "
                                              "instead of starting a system")
    parser.add_argument("--postgres-url", help="a database URL of the running Postgres (a new database is made)")
    parser.add_argument("--serve-port", type=int, help="the HTTP port of the running Ray Serve")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
