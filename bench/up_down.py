"""`quadracode-ray up` ready time and `down` time, each step's time as the command prints it.

    .venv/bin/python bench/up_down.py [--rounds 2] [--ingress haproxy]

Runs ``up`` then ``down`` ``--rounds`` times on one data folder of its own (free ports, so it
runs beside anything else): the first ``up`` also creates the embedded Postgres; the later ones
are the warm case (images built, environment synced, data folder present). Writes
bench/reports/up_down.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.peers import free_port  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "quadracode-ray")
REPORT = ROOT / "bench" / "reports" / "up_down.md"
# "✓ step (2.1 s)"; a deploy stage is "✓ stage (at 5.0 s)", counted from the deploy's start
STEP = re.compile(r"✓ (.+) \(((?:at )?\d+\.\d) s\)")


def timed(env: dict[str, str], command: str) -> tuple[float, list[tuple[str, float]], str]:
    started = time.monotonic()
    result = subprocess.run([CLI, command], env=env, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"`quadracode-ray {command}` exited {result.returncode}:\n{output}")
    return wall, [(name.strip(), seconds) for name, seconds in STEP.findall(output)], output


def head_cpu(data_dir: Path) -> list[tuple[str, float]]:
    """CPU seconds each kind of process of the head `up` started has used so far (its session:
    Ray's own processes, the Serve actors, the fabric's, HAProxy), most first: where the ready
    time goes on a machine whose cores are the limit."""
    pid = json.loads((data_dir / "run" / "state.json").read_text())["ray"]["pid"]
    by_kind: dict[str, float] = {}
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(process.pid) != pid:
                continue
            kind = _kind(process)
            cpu = process.cpu_times()
            by_kind[kind] = by_kind.get(kind, 0.0) + cpu.user + cpu.system
    return sorted(by_kind.items(), key=lambda item: -item[1])


def _kind(process: psutil.Process) -> str:
    if process.name().startswith("ray::"):  # an actor's name, without the method it runs now
        return process.name().split(".")[0]
    words = process.cmdline()
    if words and words[0].startswith("ray-dashboard-"):
        return "dashboard module"
    if "-c" in words:  # the dashboard's multiprocessing helpers
        code = words[words.index("-c") + 1] if len(words) > words.index("-c") + 1 else ""
        return "dashboard forkserver" if "forkserver" in code else "python -c " + code[:30]
    # The program, or the script or module a Python runs ("ray start", "dashboard.py", "gcs_server").
    program = [w for w in words if not w.startswith("-") and "python" not in Path(w).name][:2]
    names = [Path(w).name for w in program]
    return " ".join(names[:2] if names[:1] == ["ray"] else names[:1]) or process.name()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    data_dir = Path("/tmp") / f"qr-updown-{uuid.uuid4().hex[:8]}"  # short: Postgres' socket lives in it
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUADRACODE_")}
    env.update({"QUADRACODE_DATA_DIR": str(data_dir), "QUADRACODE_HTTP_PORT": str(free_port()),
                "QUADRACODE_RAY_PORT": str(free_port()), "QUADRACODE_DASHBOARD_PORT": str(free_port()),
                "QUADRACODE_SERVE_INGRESS": args.ingress})
    load_before = os.getloadavg()[0]
    rounds = []
    try:
        for i in range(args.rounds):
            load = os.getloadavg()[0]
            up = timed(env, "up")
            cpu = head_cpu(data_dir)
            down = timed(env, "down")
            rounds.append((up, down, load, cpu))
            print(f"round {i + 1}: up {up[0]:.1f} s, down {down[0]:.1f} s (load {load:.1f})", flush=True)
    finally:
        subprocess.run([CLI, "down"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(data_dir, ignore_errors=True)
    lines = ["# `quadracode-ray up` and `down`: wall time and each step's", "",
             f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} CPUs); load average before "
             f"{load_before:.1f}, after {os.getloadavg()[0]:.1f}; Serve ingress `{args.ingress}`. Command: "
             f"`.venv/bin/python bench/up_down.py --rounds {args.rounds} --ingress {args.ingress}` (round 1 creates "
             "the embedded Postgres; later rounds are the warm case).", ""]
    for i, ((up_wall, up_steps, _), (down_wall, down_steps, _), load, cpu) in enumerate(rounds, 1):
        lines += [f"## Round {i}: up {up_wall:.1f} s, down {down_wall:.1f} s (load average {load:.1f} at its start)",
                  "", "Wall times are the command's, from its launch to its exit (Python's start and imports "
                  "included); steps overlap where `up` runs them together.", "", "| command | step | s |",
                  "| --- | --- | --- |"]
        lines += [f"| up | {name} | {seconds} |" for name, seconds in up_steps]
        lines += [f"| down | {name} | {seconds} |" for name, seconds in down_steps]
        lines += ["", f"CPU the head's processes had used when `up` was ready: {sum(c for _, c in cpu):.1f} s "
                  f"(on {os.cpu_count()} CPUs), by process: "
                  + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in cpu), ""]
    warm = rounds[1:] or rounds
    up_warm = min(r[0][0] for r in warm)
    down_warm = min(r[1][0] for r in warm)
    lines += [f"Targets (warm machine): up ready <= 15 s: {'met' if up_warm <= 15 else 'not met'} ({up_warm:.1f} s); "
              f"down <= 3 s: {'met' if down_warm <= 3 else 'not met'} ({down_warm:.1f} s).", ""]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
