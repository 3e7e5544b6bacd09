"""bench/reports/api.md from one run of bench/api_bench.py: every peer's figures, the ratios
(only when the machine was quiet), CPU per run by process and a segment breakdown."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

NOTES_HEADING = "## Reading these figures"
BUSY_OTHERS_SHARE = 0.15
"""Other processes took more than this share of the machine's CPU during the run: no ratios."""

PEERS = (("ours", "ours"), ("official", "official dev server"), ("aegra", "Aegra"))


def busy_reason(results: dict) -> str | None:
    cpus = results.get("cpus") or os.cpu_count() or 1
    share = results.get("others_cpu_share", 0.0)
    if share > BUSY_OTHERS_SHARE:
        return f"other processes took {share:.0%} of the machine's CPU during the run (limit {BUSY_OTHERS_SHARE:.0%})"
    if results["load_before"][0] > cpus:
        return f"load average {results['load_before'][0]:.1f} before the timed part on {cpus} CPUs"
    return None


def _ratio(mine: float, theirs: float, busy: bool) -> str:
    if busy:
        return "- (busy)"
    return f"{mine / theirs:.1f}x" if theirs else "-"


def _pair(row: dict | None, digits: int = 1) -> str:
    if row and "error" in row:
        return f"failed ({row['error'][:80]})"
    return f"{row['p50']:.{digits}f} / {row['p95']:.{digits}f}" if row else "-"


def render(results: dict) -> str:
    busy = busy_reason(results)
    present = [(key, label) for key, label in PEERS if key in results]
    clients = results["clients"]
    lines = [
        "# LangGraph API bench: every peer side by side",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({results.get('cpus')} CPUs, Python "
        f"{platform.python_version()}); load average before the timed part {results['load_before'][0]:.1f} "
        f"(before the peers started {results.get('load_at_start', results['load_before'])[0]:.1f}), after "
        f"{results['load_after'][0]:.1f}; other processes took {results.get('others_cpu_share', 0):.0%} of the "
        f"machine's CPU during the run. Ours: Serve ingress `{results.get('ingress')}`.",
        "**The machine was busy: " + busy + "; ratios are withheld, figures are indicative only.**" if busy else
        "The machine was quiet enough for ratios (other processes under "
        f"{BUSY_OTHERS_SHARE:.0%} of its CPU, load below its CPU count before the timed part).",
        "",
        "Graph: bench/api_graph.py (one node adding one). Peers: ours (Ray Serve, runs durable in Postgres before "
        "they are acknowledged), the official dev server (`langgraph dev`, in memory), Aegra (`aegra-api`, "
        "durable, on the same embedded Postgres), Serve's empty route, `graph.ainvoke` in process. Each client makes "
        f"{results['per_client']} sequential calls after one warm-up call; latency is per call, runs/s over "
        "the timed part. Command: `.venv/bin/python bench/api_bench.py`.",
        "",
        *([f"**Aegra was left out of this run**: {results['aegra_failed']}", ""] if results.get("aegra_failed") else []),
        "## runs.wait and runs.stream",
        "",
        "| call | clients | in-process p50 ms | " + " | ".join(f"{label} p50 / p95 ms" for _, label in present)
        + " | " + " | ".join(f"{label} runs/s" for _, label in present) + " | ours / official | ours / Aegra |",
        "| --- | --- | --- | " + " | ".join("---" for _ in present) * 1 + " | "
        + " | ".join("---" for _ in present) + " | --- | --- |",
    ]
    for mode in ("wait", "stream"):
        for n in clients:
            rows = [results[key][mode].get(n) or results[key][mode].get(str(n)) for key, _ in present]
            rps = {key: (row or {}).get("rps", 0.0) for (key, _), row in zip(present, rows, strict=True)}
            floor = results["floor"].get(n) or results["floor"].get(str(n))
            lines.append(
                f"| runs.{mode} | {n} | {floor['p50']:.2f} | " + " | ".join(_pair(r) for r in rows) + " | "
                + " | ".join(f"{(r or {}).get('rps', 0):.1f}" for r in rows) + " | "
                + _ratio(rps["ours"], rps.get("official", 0), bool(busy)) + " | "
                + (_ratio(rps["ours"], rps["aegra"], bool(busy)) if "aegra" in rps else "-") + " |")
    lines += ["", "## Serve's empty route (its ingress alone, no code of ours)", "",
              "| clients | p50 / p95 ms | requests/s |", "| --- | --- | --- |"]
    for n in clients:
        row = results["serve_floor"].get(n) or results["serve_floor"].get(str(n))
        lines.append(f"| {n} | {_pair(row, 2)} | {row['rps']:.0f} |")
    lines += _cpu_section(results, present)
    lines += ["", "## CRUD latency (one client)", "",
              "| call | " + " | ".join(f"{label} p50 / p95 ms" for _, label in present) + " | ours / official p50 |",
              "| --- | " + " | ".join("---" for _ in present) + " | --- |"]
    for name, row in results["ours"]["crud"].items():
        others = [results[key]["crud"].get(name) for key, _ in present[1:]]
        official = results.get("official", {}).get("crud", {}).get(name)
        comparable = official and "p50" in official and "p50" in row
        ratio = "- (busy)" if busy else (f"{row['p50'] / official['p50']:.1f}x" if comparable else "-")
        lines.append(f"| {name} | {_pair(row)} | " + " | ".join(_pair(o) for o in others) + f" | {ratio} |")
    lines += _segments(results)
    lines += _targets(results, busy)
    return "\n".join(lines) + "\n"


def _targets(results: dict, busy: str | None) -> list[str]:
    """Issue 17's targets, each met or not, from this run."""
    lines = ["## Against the targets (issue 17)", ""]
    if busy:
        lines.append("- Throughput and CRUD ratios: not judged, the machine was busy (see the top).")
    else:
        for mode in ("wait", "stream"):
            for n in (c for c in results["clients"] if c in (10, 32)):
                mine = results["ours"][mode][n]["rps"]
                for key, label, target in (("official", "official dev server", 1.5), ("aegra", "Aegra", 3.0)):
                    if key in results:
                        ratio = mine / results[key][mode][n]["rps"]
                        lines.append(f"- runs.{mode} at {n} clients: {ratio:.1f}x {label} (target >= {target}x): "
                                     + ("met" if ratio >= target else "not met"))
        if "official" in results:
            crud = results["ours"]["crud"]
            failed = sorted(name for name, row in crud.items() if "p50" not in row)
            worst = max((crud[name]["p50"] / row["p50"] for name, row in results["official"]["crud"].items()
                         if not name.startswith("GET") and "p50" in row and "p50" in crud.get(name, {})),
                        default=float("nan"))
            lines.append(f"- CRUD p50, worst call: {worst:.1f}x the official dev server (target <= 2x): "
                         + ("not met: failed " + ", ".join(failed) if failed else "met" if worst <= 2 else "not met"))
    for mode, target in (("wait", 10.0), ("stream", 12.0)):
        cpu = results["ours"][mode].get(10, {}).get("cpu_ms")
        if cpu:
            total = sum(ms for kind, ms in cpu.items() if kind not in ("bench client", "other"))
            lines.append(f"- CPU per runs.{mode}, all our processes: {total:.1f} ms (target <= {target:.0f} ms): "
                         + ("met" if total <= target else "not met"))
    return lines + [""]


def _cpu_section(results: dict, present: list[tuple[str, str]]) -> list[str]:
    lines = ["", "## CPU per run at 10 clients, by process (ms)", "",
             "Every process a run goes through, summed over the timed part and divided by its runs (the bench "
             "client's own share is listed apart and left out of the totals).", "",
             "| call | ours: by process | ours: servers' total | " + " | ".join(
                 f"{label}: total" for key, label in present if key != "ours") + " |",
             "| --- | --- | --- | " + " | ".join("---" for key, _ in present if key != "ours") + " |"]
    for mode in ("wait", "stream"):
        mine = (results["ours"][mode].get(10) or results["ours"][mode].get("10") or {}).get("cpu_ms")
        if mine is None:
            continue
        parts = ", ".join(f"{kind} {ms:.1f}" for kind, ms in mine.items() if ms >= 0.05)
        totals = []
        for key, _ in present:
            cpu = (results[key][mode].get(10) or results[key][mode].get("10") or {}).get("cpu_ms") or {}
            totals.append(sum(ms for kind, ms in cpu.items() if kind not in ("bench client", "other")))
        lines.append(f"| runs.{mode} | {parts} | {totals[0]:.1f} | " + " | ".join(f"{t:.1f}" for t in totals[1:]) + " |")
    return lines


def _segments(results: dict) -> list[str]:
    """One runs.wait at one client, from the floors measured in the same run (p50s, subtracted)."""
    one = results["clients"][0]

    def p50(row: dict) -> float:
        return row["p50"]

    serve_get = p50(results["serve_floor"].get(one) or results["serve_floor"][str(one)])
    our_get = p50(results["ours"]["crud"]["GET /ok (HTTP floor)"])
    wait = p50(results["ours"]["wait"].get(one) or results["ours"]["wait"][str(one)])
    stream = p50(results["ours"]["stream"].get(one) or results["ours"]["stream"][str(one)])
    graph = p50(results["floor"].get(one) or results["floor"][str(one)])
    checkpointed = p50(results["checkpointed"])
    rows = [
        ("Serve's ingress: GET on an empty route", serve_get),
        ("our HTTP stack: GET /ok minus the empty route (auth, metrics middleware)", our_get - serve_get),
        ("the graph with its Postgres checkpoints, in process", checkpointed),
        ("the run's own path: create (insert), hop to the executor, finish, answer "
         "(runs.wait minus the rows above)", wait - our_get - checkpointed),
    ]
    lines = ["", f"## Segment breakdown of one runs.wait at {one} client (p50 ms, from the floors beside it)", "",
             "| segment | ms |", "| --- | --- |"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in rows]
    lines += [f"| total: runs.wait p50 | {wait:.1f} |",
              f"| runs.stream p50 (the same run, streamed as SSE) | {stream:.1f} |",
              f"| for reference: graph.ainvoke in process, no checkpointer | {graph:.2f} |", ""]
    return lines
