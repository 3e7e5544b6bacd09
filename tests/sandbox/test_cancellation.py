"""A caller that gives up on an exec (an emergency stop, a cancelled run) kills the command in
the container, instead of leaving it running until its own timeout."""

from __future__ import annotations

import asyncio

from sandbox.client import get_workspace
from tests.polling import eventually

MARKER = "sleep 597"  # a duration no other test uses, to find this command in the process list


async def _running(ws) -> bool:
    listing = await ws.exec("ps -eo args", timeout=10)
    return any(line.strip() == MARKER for line in listing.stdout.splitlines())


async def test_cancelling_an_exec_kills_its_command(ray_cluster, sandbox_settings):
    ws = await get_workspace("cancel", sandbox_settings())
    call = asyncio.create_task(ws.exec(MARKER, timeout=600))
    await eventually(lambda: _running(ws), timeout=60, what="the command to start in the container")

    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()

    async def gone() -> bool:
        return not await _running(ws)

    await eventually(gone, timeout=30, what="the command to be killed")
    assert (await ws.exec("echo still serving")).stdout == "still serving\n"
