"""What bench/soak.py samples beyond RSS, to tell why latency moves during a soak.

A closed loop of 32 clients slows when something grows (a table scanned whole, a daemon's
memory), when the system's own processes burn more CPU per call, or when the machine's other
tenants take the cores. Each sample therefore holds: the CPU seconds of every long-lived
process and of the soak's own client process, the machine's busy CPU, and per Postgres table
its sequential scans, rows read by them, index scans and live rows. ``diagnosis`` turns the
samples into a per-minute table and names the tables whose sequential reads grow.
"""

from __future__ import annotations

import os

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
    """CPU seconds the whole machine spent not idle since boot (every tenant's work)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


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
    client's cores, load average, and rows read by sequential scans per second."""
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
        }
    return out


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
             "used by the system's long-lived processes and by the soak's client process (the rest is Ray's "
             "workers, Docker and other sessions), the 1-minute load average, and rows read per second by "
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
    lines += ["", "CPU cores used per process, first half after warm-up vs second half (top 8 by the second):", "",
              "| process | first half | second half |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, a, b in cpu_by_process(samples)]
    lines += ["", "Postgres tables read most by sequential scans during the soak:", "",
              "| table | seq scans | rows read by them | index scans | live rows at the end |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {seq} | {read} | {idx} | {live} |" for name, seq, read, idx, live in growing_scans(samples)]
    return lines + [""]
