"""RunStream.gather: a run's events batched for a reader in another process (pure asyncio)."""

from __future__ import annotations

import asyncio
import time

from runs.stream import END_EVENT, RunStream


async def test_gather_takes_what_follows_within_the_window() -> None:
    stream = RunStream("r")
    await stream.publish("values", b"1")

    async def later() -> None:
        await asyncio.sleep(0)
        await stream.publish("values", b"2")

    publisher = asyncio.ensure_future(later())
    items = await stream.gather(-1, stream.since(-1), 0.2)
    await publisher
    assert [e.data for e in items] == [b"1", b"2"]


async def test_gather_returns_at_the_end_without_waiting_out_the_window() -> None:
    stream = RunStream("r")
    await stream.publish("values", b"1")

    async def end() -> None:
        await asyncio.sleep(0)
        await stream.publish(END_EVENT, b"{}")

    publisher = asyncio.ensure_future(end())
    t0 = time.monotonic()
    items = await stream.gather(-1, stream.since(-1), 30.0)
    await publisher
    assert [e.event for e in items] == ["values", END_EVENT]
    assert time.monotonic() - t0 < 10.0  # the run's end, not the 30 s window, ended the batch


async def test_gather_stops_at_the_window_while_the_run_goes_on() -> None:
    stream = RunStream("r")
    await stream.publish("values", b"1")
    t0 = time.monotonic()
    items = await stream.gather(-1, stream.since(-1), 0.05)
    assert [e.data for e in items] == [b"1"]
    assert time.monotonic() - t0 >= 0.04


async def test_gather_after_a_seq_leaves_earlier_events_out() -> None:
    stream = RunStream("r")
    for data in (b"1", b"2"):
        await stream.publish("values", data)
    await stream.finish()
    items = await stream.gather(0, stream.since(0), 1.0)
    assert [e.data for e in items] == [b"2"]
