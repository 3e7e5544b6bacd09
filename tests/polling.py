"""Waiting for something to become true in a test: a poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(probe: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, what: str = "condition",
                     interval: float = 0.05) -> Any:
    """Poll ``probe`` until it returns something truthy (and return it), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def eventually_sync(probe: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition",
                    interval: float = 0.1) -> Any:
    """``eventually`` for tests that are not coroutines (subprocesses, blocking clients)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
