"""Where the run path's CPU goes: py-spy on the API replica and the run executors under load.

    .venv/bin/python bench/run_profile.py [--call wait|stream|threads.get|assistants.get|ok]
                                          [--clients 10] [--seconds 20] [--top 25]

Starts ours as bench/api_bench.py does (bench/peers.py: embedded Postgres, a local Ray, the Serve
app on the bench graph), drives ``--call`` from ``--clients`` concurrent langgraph-sdk clients for
``--seconds`` while py-spy (``pip install py-spy``) samples every replica and run executor, then
prints, per kind of process, the functions with the most samples on CPU: by themselves (self) and
with what they call (inclusive). Needs permission to ptrace those processes (root, or
ptrace_scope 0). Not a timed bench: run it on a quiet machine all the same, the shares are what
it is for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import peers  # noqa: E402
from bench.api_bench import distinct_config, wait_up  # noqa: E402

KINDS = {"API replica": "ServeReplica:quadracode", "run executors": "RunExecutor"}


def pids_by_kind() -> dict[str, list[int]]:
    import psutil

    found: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for process in psutil.Process().children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        for kind, key in KINDS.items():
            if key in command:
                found[kind].append(process.pid)
    return found


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def summarize(raw_files: list[Path], top: int) -> list[str]:
    """Collapsed stacks ("frame;frame;... count") -> the top functions, self and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for raw in raw_files:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [frame.split(" (")[0] + " (" + frame.split(" (")[1].rsplit(":", 1)[0].split("/")[-1] + ")"
                      if " (" in frame else frame for frame in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
    if not total:
        return ["  no samples"]
    lines = [f"  {total} samples on CPU", "  self:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["  inclusive:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return lines


async def drive(url: str, call: str, clients: int, seconds: float) -> int:
    from langgraph_sdk import get_client

    client = get_client(url=url, api_key=None, timeout=120)
    aid = (await client.assistants.create(peers.GRAPH_ID, config=distinct_config()))["assistant_id"]
    done = 0

    async def one_client() -> None:
        nonlocal done
        tid = (await client.threads.create())["thread_id"]
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            if call == "wait":
                assert await client.runs.wait(tid, aid, input={"n": 1}) == {"n": 2}
            elif call == "stream":
                [part async for part in client.runs.stream(tid, aid, input={"n": 1}, stream_mode="values")]
            elif call == "threads.get":
                await client.threads.get(tid)
            elif call == "assistants.get":
                await client.assistants.get(aid)
            else:
                await client.http.get("/ok")
            done += 1

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return done


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="run-profile-", dir="/var/tmp"))
    try:
        ours, _, _ = peers.start_ours(root, args.ingress)
        await wait_up(ours, 240)
        await drive(ours.url, args.call, args.clients, 3)  # warm-up
        found = pids_by_kind()
        spies = []
        for kind, pids in found.items():
            for pid in pids:
                out = root / f"{pid}.txt"
                spies.append((kind, out, subprocess.Popen(
                    [py_spy(), "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--rate", "250",
                     "--format", "raw", "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        done = await drive(ours.url, args.call, args.clients, args.seconds)
        for _, _, spy in spies:
            spy.wait(timeout=60)
        print(f"{args.call} x{args.clients}: {done} calls in {args.seconds:.0f} s, load {os.getloadavg()[0]:.1f}")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for kind, out, _ in spies:
                if out.exists():
                    shutil.copy(out, args.keep / f"{kind.replace(' ', '-')}-{out.name}")
        for kind in KINDS:
            print(f"{kind} ({len(found[kind])} processes):")
            print("\n".join(summarize([out for k, out, _ in spies if k == kind], args.top)))
    finally:
        peers.stop_ours(root)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--call", choices=("wait", "stream", "threads.get", "assistants.get", "ok"), default="wait")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    parser.add_argument("--keep", type=Path, help="copy py-spy's collapsed stacks into this folder")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
