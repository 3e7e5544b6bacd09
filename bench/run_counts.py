"""What one run costs in statements and CPU: SQL statements per run, and CPU
per run by process, for ``runs.wait`` and ``runs.stream`` on the bench graph.

    .venv/bin/python bench/run_counts.py [--clients 10] [--runs-per-client 20] [--ingress haproxy]

Starts ours as bench/api_bench.py does (bench/peers.py), then for each call: counts the SQL
statements Postgres logs (``log_statement = 'all'``) over sequential runs at one client, and the CPU per run by process at ``--clients``. Not a
ratio bench (no peers): it is for comparing two versions of the run path side by side; run it
through ``/work/team/heavy``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import peers  # noqa: E402
from bench.api_bench import concurrent, distinct_config, wait_up  # noqa: E402

COUNTED_RUNS = 20


def _set_statement_log(admin_url: str, on: bool) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET log_statement = '{'all' if on else 'none'}'")
        conn.execute("SELECT pg_reload_conf()")


def _statements(log: Path, start: int) -> Counter:
    """Statements logged after byte ``start`` of the server log, by their first words (a
    statement starting with a line break is named by its next line)."""
    counts: Counter = Counter()
    pending = False
    with log.open("rb") as f:
        f.seek(start)
        for line in f.read().decode(errors="replace").splitlines():
            if pending and line.strip():
                counts[" ".join(line.split()[:4])[:60]] += 1
                pending = False
                continue
            for marker in ("LOG:  statement: ", "LOG:  execute "):
                if marker in line:
                    text = line.split(marker, 1)[1]
                    text = text.split(": ", 1)[1] if marker == "LOG:  execute " and ": " in text else text
                    if text.strip():
                        counts[" ".join(text.split()[:4])[:60]] += 1
                    else:
                        pending = True
    return counts


async def main_async(args: argparse.Namespace) -> None:
    from langgraph_sdk import get_client

    root = Path(tempfile.mkdtemp(prefix="run-counts-", dir="/var/tmp"))
    try:
        ours, _, admin_url = peers.start_ours(root, args.ingress)
        await wait_up(ours, 240)
        client = get_client(url=ours.url, api_key=None, timeout=120)
        aid = (await client.assistants.create(peers.GRAPH_ID, config=distinct_config()))["assistant_id"]
        tid = (await client.threads.create())["thread_id"]

        async def wait_once():
            assert await client.runs.wait(tid, aid, input={"n": 1}) == {"n": 2}

        async def stream_once():
            events = [part.event async for part in client.runs.stream(tid, aid, input={"n": 1}, stream_mode="values")]
            assert events[0] == "metadata" and "values" in events, events

        log = next((root / "pg").rglob("log"))
        for name, once in (("runs.wait", wait_once), ("runs.stream", stream_once)):
            for _ in range(5):
                await once()  # warm
            _set_statement_log(admin_url, True)
            await asyncio.sleep(0.5)
            start = log.stat().st_size
            for _ in range(COUNTED_RUNS):
                await once()
            await asyncio.sleep(0.5)
            statements = _statements(log, start)
            _set_statement_log(admin_url, False)
            print(f"{name}: {sum(statements.values()) / COUNTED_RUNS:.1f} SQL statements per run:")
            for text, n in statements.most_common():
                print(f"    {n / COUNTED_RUNS:5.2f}  {text}")

        async def make(call):
            async def factory(_: int):
                thread = (await client.threads.create())["thread_id"]

                async def one():
                    if call == "wait":
                        assert await client.runs.wait(thread, aid, input={"n": 1}) == {"n": 2}
                    else:
                        [p async for p in client.runs.stream(thread, aid, input={"n": 1}, stream_mode="values")]
                return one
            return factory

        for call in ("wait", "stream"):
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            row = await concurrent(args.clients, args.runs_per_client, await make(call), ours.cpu_roots)
            cpu = row["cpu_ms"]
            servers = sum(v for k, v in cpu.items() if k != "bench client")
            print(f"runs.{call} x{args.clients}: {row['rps']:.1f} runs/s, p50 {row['p50']:.1f} ms, "
                  f"CPU per run {servers:.1f} ms (load {load:.1f}, {time.monotonic() - t0:.0f} s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    finally:
        peers.stop_ours(root)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--runs-per-client", type=int, default=20)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
