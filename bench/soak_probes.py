"""What bench/soak.py samples beyond RSS, to tell why latency moves during a soak.

A closed loop of 32 clients slows when something grows (a table scanned whole, a daemon's
memory), when the system's own processes burn more CPU per call, or when the machine's other
tenants take the cores. Each sample therefore holds: the CPU seconds of every long-lived
process and of the soak's own client process, the machine's busy CPU, and per Postgres table
its sequential scans, rows read by them, index scans and live rows. ``diagnosis`` turns the
samples into a per-minute table and names the tables whose sequential reads grow.

Two more tell a slower machine from a system that does more work per call: a fixed piece of pure
Python timed in CPU time (``cpu_speed_ms``: the same work costs more CPU time when the VM's
cores are slower or shared with its other tenants, whatever our processes do), with the
hypervisor's steal time beside it; a walk over memory far larger than the CPU's caches
(``memory_speed_ms``: the loop stays in cache and cannot see memory or cache contention, such
as a neighbour's; in the 20:11 soak of 2026-12-04 every process slowed alike while the loop did
not); and the work Postgres does per call (its backends' CPU, the rows its scans returned and
fetched), which grows with a table scanned further as it grows.
"""

from __future__ import annotations

import os
import statistics

import psutil


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return float("nan")
    return times.user + times.system


def own_cpu_seconds() -> float:
    """The soak's client process (its 32 clients and the sampler), children excluded."""
    return cpu_seconds(os.getpid())


def machine_busy_cpu_seconds() -> float:
    """CPU seconds the whole machine's tenants spent running since boot (steal left out)."""
    times = psutil.cpu_times()
    return (sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "steal", 0.0)
            - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0))  # guest time is in user already


def steal_cpu_seconds() -> float:
    """CPU seconds the hypervisor gave to other VMs while this one had work to run."""
    return getattr(psutil.cpu_times(), "steal", 0.0)


CALIBRATION_LOOP = 300_000


def cpu_speed_ms(repeats: int = 3) -> float:
    """CPU milliseconds of a fixed loop (the least of ``repeats``): the machine's speed, not ours.
    Run it in a thread of its own: thread CPU time counts only the time it ran."""
    import time

    best = float("inf")
    for _ in range(repeats):
        started, total = time.thread_time(), 0
        for i in range(CALIBRATION_LOOP):
            total += i * i
        best = min(best, (time.thread_time() - started) * 1000)
    return best


MEMORY_WALK_MIB = 64  # far past any L2/L3 this VM has: every read misses the caches
_memory_walk = None


def memory_speed_ms(repeats: int = 3) -> float:
    """CPU milliseconds of reading one int in every 64-byte cache line of MEMORY_WALK_MIB (the
    least of ``repeats``): the machine's memory speed. In a thread of its own, as cpu_speed_ms."""
    import time

    import numpy

    global _memory_walk
    if _memory_walk is None:
        _memory_walk = numpy.ones(MEMORY_WALK_MIB * 1024 * 1024 // 4, dtype=numpy.int32)
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        _memory_walk[::16].sum()  # 16 int32 = one 64-byte line
        best = min(best, (time.thread_time() - started) * 1000)
    return best


class PostgresCpu:
    """CPU seconds of every process of a Postgres server (postmaster and backends) so far. A
    backend's time is kept after it exits (its last sample), so the total never goes back."""

    def __init__(self, postmaster_pid: int):
        self.postmaster_pid = postmaster_pid
        self.last: dict[int, float] = {}

    def seconds(self) -> float:
        try:
            server = psutil.Process(self.postmaster_pid)
            processes = [server, *server.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            self.last[process.pid] = times.user + times.system
        return sum(self.last.values())


def database_work(database_url: str) -> dict[str, int]:
    """Cumulative counters of this database: rows its scans returned and fetched, commits."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        returned, fetched, commits = conn.execute(
            "SELECT tup_returned, tup_fetched, xact_commit FROM pg_stat_database "
            "WHERE datname = current_database()").fetchone()
    return {"tup_returned": returned, "tup_fetched": fetched, "xact_commit": commits}


def gcs_tables() -> dict[str, int]:
    """What Ray's GCS keeps records of, to tell our growth from a cache filling: actors (and the
    dead among them: one new per run would grow the GCS's actor table), workers, jobs, placement groups."""
    from ray._private import state

    actors = state.actors()
    return {"actors": len(actors), "dead_actors": sum(a.get("State") == "DEAD" for a in actors.values()),
            "workers": len(state.workers()), "jobs": len(state.jobs()),
            "placement_groups": len(state.state.placement_group_table())}


def table_stats(database_url: str) -> dict[str, dict[str, int]]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_live_tup "
                            "FROM pg_stat_user_tables").fetchall()
    return {name: {"seq_scan": seq, "seq_tup_read": read, "idx_scan": idx, "live": live}
            for name, seq, read, idx, live in rows}


def _rate(samples: list[dict], key, start: int, end: int) -> float:
    """Per-second rate of a cumulative sampled value between sample indices start and end."""
    a, b = key(samples[start]), key(samples[end])
    dt = samples[end]["t"] - samples[start]["t"]
    return (b - a) / dt if dt > 0 and a == a and b == b else float("nan")


def per_minute(samples: list[dict]) -> dict[int, dict[str, float]]:
    """minute -> machine busy cores, the system's cores (its long-lived processes), the soak
    client's cores, load average, rows read per second by sequential scans, and (when sampled)
    steal cores, the speed probe's median ms, Postgres' cores, its rows returned and fetched and
    its commits per second."""
    out: dict[int, dict[str, float]] = {}
    for i in range(1, len(samples)):
        minute = int(samples[i]["t"] // 60)
        if minute in out or "cpu" not in samples[i] or "cpu" not in samples[i - 1]:
            continue
        # the minute's first sample and its last: rates over the minute
        last = max(j for j in range(i, len(samples)) if int(samples[j]["t"] // 60) == minute)
        start = i - 1
        names = set(samples[start]["cpu"]) & set(samples[last]["cpu"])
        out[minute] = {
            "machine": _rate(samples, lambda s: s["machine_cpu"], start, last),
            "system": sum(_rate(samples, lambda s, n=n: s["cpu"][n], start, last) for n in names),
            "client": _rate(samples, lambda s: s["client_cpu"], start, last),
            "load": samples[last]["load"],
            "seq_rows": _rate(samples, lambda s: sum(t["seq_tup_read"] for t in s["tables"].values()), start, last),
            "postmaster": _rate(samples, lambda s: s["cpu"]["postgres"], start, last) if "postgres" in names else 0.0,
        }
        if all("db" in samples[j] for j in (start, last)):
            out[minute].update({
                "steal": _rate(samples, lambda s: s["steal_cpu"], start, last),
                "speed_ms": statistics.median_high(samples[j]["speed_ms"] for j in range(i, last + 1)),
                "memory_ms": statistics.median_high(samples[j].get("memory_ms", float("nan"))
                                                    for j in range(i, last + 1)),
                "postgres": _rate(samples, lambda s: s["pg_cpu"], start, last),
                "pg_rows": _rate(samples, lambda s: s["db"]["tup_returned"] + s["db"]["tup_fetched"], start, last),
                "commits": _rate(samples, lambda s: s["db"]["xact_commit"], start, last),
            })
    return out


def system_and_postgres(minute: dict[str, float]) -> float:
    """Cores of the system's long-lived processes and all of Postgres' (its postmaster, which the
    long-lived processes include, counted once)."""
    return minute["system"] - minute["postmaster"] + minute["postgres"]


def machine_summary(samples: list[dict]) -> str:
    """Where the machine's busy cores went, medians over the minutes: a report's header line."""
    minutes = [m for m in per_minute(samples).values() if "postgres" in m]
    if not minutes:
        return ""

    def median(values: list[float]) -> float:
        known = [v for v in values if v == v]  # NaN: a process that was not sampled
        return statistics.median_high(known) if known else float("nan")

    machine = median([m["machine"] for m in minutes])
    ours = median([system_and_postgres(m) for m in minutes])
    client = median([m["client"] for m in minutes])
    return (f"busy cores per minute, median {machine:.2f}: the system's long-lived processes and Postgres "
            f"{ours:.2f}, the soak's client {client:.2f}, everything else (Ray's other workers, Docker and the "
            f"workspaces, any other tenant) {machine - ours - client:.2f}; the hypervisor stole "
            f"{median([m['steal'] for m in minutes]):.2f}")


def work_per_call_lines(minutes: dict[int, dict[str, float]], calls: dict[int, int]) -> list[str]:
    """Per minute: the machine's speed (the probe, steal) beside what each call cost the system
    (CPU of its long-lived processes and of Postgres, Postgres rows and commits). A probe that
    rises with the CPU per call is the VM slowing; a flat probe with rising CPU per call is work
    the system added per call."""
    lines = ["Per minute: the speed probe (CPU ms of a fixed loop in the soak's process: higher is a slower "
             f"machine), the memory probe (CPU ms of a walk over {MEMORY_WALK_MIB} MiB, past the caches: higher "
             "is slower memory), the cores the hypervisor stole, and per call: CPU ms of the system's long-lived "
             "processes and Postgres together, of Postgres alone, the rows Postgres returned and fetched, its "
             "commits.", "",
             "| minute | calls | speed probe ms | memory probe ms | steal cores | CPU ms per call "
             "| Postgres CPU ms per call | Postgres rows per call | commits per call |", "| ---: " * 9 + "|"]
    for minute in sorted(calls):
        m = minutes.get(minute, {})
        if "speed_ms" not in m or not calls[minute]:
            continue
        per_call = 60 / calls[minute]  # a rate per second over the minute, per call
        lines.append(f"| {minute} | {calls[minute]} | {m['speed_ms']:.1f} | {m['memory_ms']:.2f} | {m['steal']:.2f} | "
                     f"{system_and_postgres(m) * per_call * 1000:.1f} | {m['postgres'] * per_call * 1000:.1f} | "
                     f"{m['pg_rows'] * per_call:.0f} | {m['commits'] * per_call:.1f} |")
    return lines + [""]


def growing_scans(samples: list[dict], top: int = 5) -> list[tuple[str, int, int, int, int]]:
    """The tables read most by sequential scans during the soak: (table, seq scans, rows they
    read, index scans, live rows at the end)."""
    with_tables = [s for s in samples if "tables" in s]
    if len(with_tables) < 2:
        return []
    first, last = with_tables[0]["tables"], with_tables[-1]["tables"]
    rows = []
    for name, end in last.items():
        begin = first.get(name, {"seq_scan": 0, "seq_tup_read": 0, "idx_scan": 0})
        rows.append((name, end["seq_scan"] - begin["seq_scan"], end["seq_tup_read"] - begin["seq_tup_read"],
                     end["idx_scan"] - begin["idx_scan"], end["live"]))
    return sorted(rows, key=lambda r: -r[2])[:top]


def cpu_by_process(samples: list[dict], top: int = 8) -> list[tuple[str, float, float]]:
    """(process, cores used over the first half after warm-up, over the second half)."""
    with_cpu = [s for s in samples if "cpu" in s]
    if len(with_cpu) < 5:
        return []
    mid = len(with_cpu) // 2
    early, late = (with_cpu[len(with_cpu) // 6], with_cpu[mid]), (with_cpu[mid], with_cpu[-1])
    names = set(early[0]["cpu"]) & set(late[1]["cpu"])

    def cores(pair, name):
        dt = pair[1]["t"] - pair[0]["t"]
        return (pair[1]["cpu"].get(name, float("nan")) - pair[0]["cpu"].get(name, float("nan"))) / dt

    rows = [(name, cores(early, name), cores(late, name)) for name in names]
    return sorted(rows, key=lambda r: -(r[2] if r[2] == r[2] else 0))[:top]


def diagnosis_lines(samples: list[dict], latencies: dict[int, list[float]], kinds: dict[tuple[int, str], list[float]],
                    percentile) -> list[str]:
    minutes = per_minute(samples)
    kind_names = sorted({kind for _, kind in kinds})
    lines = ["## Where the time went", "",
             "Per minute: calls, p50 of all calls and of each kind (ms), CPU cores busy on the whole machine, "
             "used by the system's long-lived processes (Postgres' postmaster, not its backends) and by the soak's "
             "client process (the rest is Postgres' backends, Ray's other workers, Docker and any other tenant), "
             "the 1-minute load average, and rows read per second by "
             "sequential scans in Postgres.", "",
             "| minute | calls | p50 | " + " | ".join(kind_names) + " | machine cores | system cores | client cores "
             "| load | seq rows/s |",
             "| ---: " * (len(kind_names) + 8) + "|"]
    for minute in sorted(latencies):
        m = minutes.get(minute, {})
        per_kind = " | ".join(f"{percentile(kinds.get((minute, k), []), 50) * 1000:.0f}" for k in kind_names)
        lines.append(f"| {minute} | {len(latencies[minute])} | {percentile(latencies[minute], 50) * 1000:.0f} | "
                     f"{per_kind} | {m.get('machine', float('nan')):.2f} | {m.get('system', float('nan')):.2f} | "
                     f"{m.get('client', float('nan')):.2f} | {m.get('load', float('nan')):.1f} | "
                     f"{m.get('seq_rows', float('nan')):.0f} |")
    lines += [""] + work_per_call_lines(minutes, {minute: len(values) for minute, values in latencies.items()})
    lines += ["CPU cores used per process, first half after warm-up vs second half (top 8 by the second):", "",
              "| process | first half | second half |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, a, b in cpu_by_process(samples)]
    lines += ["", "Postgres tables read most by sequential scans during the soak:", "",
              "| table | seq scans | rows read by them | index scans | live rows at the end |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {seq} | {read} | {idx} | {live} |" for name, seq, read, idx, live in growing_scans(samples)]
    return lines + [""]
