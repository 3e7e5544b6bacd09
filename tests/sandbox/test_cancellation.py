"""A caller that gives up on an exec (an emergency stop, a cancelled run) kills the command in
the container, instead of leaving it running until its own timeout."""

from __future__ import annotations

import asyncio
import time

from sandbox.client import get_workspace

MARKER = "sleep 597"  # a duration no other test uses, to find this command in the process list


async def _running(ws) -> bool:
    listing = await ws.exec("ps -eo args", timeout=10)
    return any(line.strip() == MARKER for line in listing.stdout.splitlines())


async def _until(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_cancelling_an_exec_kills_its_command(ray_cluster, sandbox_settings):
    ws = await get_workspace("cancel", sandbox_settings())
    call = asyncio.create_task(ws.exec(MARKER, timeout=600))
    await _until(lambda: _running(ws), timeout=60, what="the command to start in the container")

    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()

    async def gone() -> bool:
        return not await _running(ws)

    await _until(gone, timeout=30, what="the command to be killed")
    assert (await ws.exec("echo still serving")).stdout == "still serving\n"
