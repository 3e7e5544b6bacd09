"""Run the official suite's messages and extensions tests (sync and async) N times against a
server and count how often each fails: the evidence behind their ``RACY`` entries in
known_gaps.py. Point it at the official dev server (``langgraph dev`` with the suite's
server/langgraph.json, never on port 2024) to see that it is the suite's own race, not ours:

    .venv/bin/python -m tests.api.conformance.race_repro http://127.0.0.1:PORT 10

Each attempt gets 30 s (a test whose projection missed the interrupt's end-of-stream hangs).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import threading
from pathlib import Path

import httpx
from langgraph_sdk._async.http import HttpClient
from langgraph_sdk._async.threads import ThreadsClient
from langgraph_sdk._sync.http import SyncHttpClient
from langgraph_sdk._sync.threads import SyncThreadsClient

SUITE_TESTS = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "langgraph-sdk" / "tests"
ATTEMPT_S = 30


def _attempt(test, url: str) -> str | None:
    """None when the test passed, else what went wrong."""
    outcome: dict[str, str | None] = {}

    async def run_async() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as raw:
            await test((ThreadsClient(HttpClient(raw)), raw))

    def run() -> None:
        try:
            if inspect.iscoroutinefunction(test):
                asyncio.run(run_async())
            else:
                with httpx.Client(base_url=url, timeout=30.0) as raw:
                    test((SyncThreadsClient(SyncHttpClient(raw)), raw))
            outcome["error"] = None
        except BaseException as exc:  # the suite's assertion, or the SDK's error
            outcome["error"] = repr(exc)[:200]

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(ATTEMPT_S)
    return outcome.get("error", f"hung {ATTEMPT_S} s")


def main(url: str, attempts: int) -> dict[str, int]:
    os.environ["LANGGRAPH_INTEGRATION_URL"] = url
    sys.path.insert(0, str(SUITE_TESTS))  # the suite's package is `integration` (relative imports)
    tests = {f"{module}::{name}": getattr(importlib.import_module(f"integration.{module}"), name)
             for module in ("test_messages", "test_extensions")
             for name in (f"{module}_sync", f"{module}_async")}
    failures = dict.fromkeys(tests, 0)
    for attempt in range(attempts):
        for name, test in tests.items():
            error = _attempt(test, url)
            if error is not None:
                failures[name] += 1
                print(f"attempt {attempt}: {name} failed: {error}", flush=True)
    for name, failed in failures.items():
        print(f"{name}: {attempts - failed} passed, {failed} failed")
    return failures


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
