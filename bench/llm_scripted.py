"""Latency of the scripted model server through the official OpenAI and Anthropic SDKs.

The server runs in its own process (as in a deployment) on a free loopback port; requests go
through our adapters (OpenAIChatModel / AnthropicChatModel), so figures include the SDKs,
message conversion, retries bookkeeping and metrics.

    .venv/bin/python bench/llm_scripted.py [--requests 300] [--concurrency 16] [--out bench/reports/llm_scripted.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from langchain_core.messages import HumanMessage

from quadracode_ray.llm import AnthropicChatModel, OpenAIChatModel
from quadracode_ray.llm.testing.conformance import TOOLS

PROMPTS = {
    "text": [HumanMessage("remember the code name FALCON")],
    "tool call": [HumanMessage("write hello.py that prints 42 and run it")],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, delay_ms: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "quadracode_ray.llm.scripted.server", "--port", str(port),
                             "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("scripted server did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(model, messages, mode: str, n: int, concurrency: int) -> dict:
    latencies: list[float] = []
    first_chunk: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            start = time.perf_counter()
            if mode == "generate":
                await model.generate(messages, tools=TOOLS)
            else:
                first = None
                async for _chunk in model.stream(messages, tools=TOOLS):
                    first = first or time.perf_counter()
                first_chunk.append((first - start) * 1000)
            latencies.append((time.perf_counter() - start) * 1000)

    for _ in range(10):  # warm up connections
        await one()
    latencies.clear()
    first_chunk.clear()
    wall = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - wall
    return {"p50": statistics.median(latencies), "p95": pct(latencies, 0.95), "p99": pct(latencies, 0.99),
            "rps": n / wall, "first": statistics.median(first_chunk) if first_chunk else None}


async def run(args) -> list[dict]:
    rows = []
    for delay_ms in (0.0, args.delay_ms):
        port = free_port()
        proc = start_server(port, delay_ms)
        try:
            url = f"http://127.0.0.1:{port}"
            adapters = {
                "openai": OpenAIChatModel("bench", api_key="x", base_url=url + "/v1"),
                "anthropic": AnthropicChatModel("bench", api_key="x", base_url=url),
            }
            for sdk, model in adapters.items():
                for prompt, messages in PROMPTS.items():
                    for mode in ("generate", "stream"):
                        for conc in (1, args.concurrency):
                            stats = await measure(model, messages, mode, args.requests, conc)
                            rows.append({"sdk": sdk, "prompt": prompt, "mode": mode, "concurrency": conc,
                                         "delay_ms": delay_ms, **stats})
                            print(json.dumps(rows[-1]), flush=True)
                await model.aclose()
        finally:
            proc.terminate()
            proc.wait(10)
    return rows


def report(rows: list[dict], args) -> str:
    lines = [
        "# Scripted model server: latency through the official SDKs",
        "",
        f"Command: `.venv/bin/python bench/llm_scripted.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --delay-ms {args.delay_ms}`",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, 2 shared cores "
        "(other engineers' test runs were active, so treat figures as indicative).",
        "",
        "Server in its own process on loopback; client through `OpenAIChatModel` / `AnthropicChatModel` "
        "(SDK, conversion, metrics). `stream` latency is to the final chunk; `first` is time to the first chunk. "
        f"{args.requests} requests per row after 10 warm-up requests.",
        "",
        "| SDK | prompt | mode | concurrency | added delay ms | p50 ms | p95 ms | p99 ms | first chunk p50 ms | req/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        first = f"{r['first']:.1f}" if r["first"] is not None else "-"
        lines.append(f"| {r['sdk']} | {r['prompt']} | {r['mode']} | {r['concurrency']} | {r['delay_ms']:.0f} | "
                     f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {first} | {r['rps']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--out", default="bench/reports/llm_scripted.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    text = report(rows, args)
    Path(args.out).write_text(text + "\n## Reading\n\nSee the summary below the table (written by hand).\n")
    print(text)


if __name__ == "__main__":
    main()
