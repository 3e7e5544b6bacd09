"""The in-memory event log of a run (pure asyncio; the executor and SSE tests cover the rest)."""

from __future__ import annotations

import asyncio

from runs.stream import RunStream, dumps


async def test_subscribers_wake_on_publish_without_polling() -> None:
    stream = RunStream("r")
    waiter = asyncio.ensure_future(stream.wait_beyond(-1))
    await asyncio.sleep(0)
    assert not waiter.done()
    await stream.publish("values", b"{}")
    await asyncio.wait_for(waiter, 1)
    assert [e.seq for e in stream.since(-1)] == [0]


async def test_bounded_log_and_trim_to_end() -> None:
    stream = RunStream("r", max_events=3)
    for _ in range(5):
        await stream.publish("values", b"{}")
    assert [e.seq for e in stream.since(-1)] == [2, 3, 4]  # oldest dropped, seqs stay stable
    await stream.publish("__end__", b"{}")
    await stream.finish()
    stream.keep_only_end()
    assert [(e.seq, e.event) for e in stream.since(-1)] == [(5, "__end__")]
    await asyncio.wait_for(stream.wait_beyond(99), 1)  # a finished stream never blocks


def test_dumps_handles_what_graphs_stream() -> None:
    from langchain_core.messages import AIMessage
    from langgraph.types import Interrupt

    assert dumps({"m": AIMessage(content="x", id="1")}).startswith(b'{"m":{"content":"x"')
    assert dumps(Interrupt(value={"q": 1}, id="i")).startswith(b'{"value":{"q":1},"id":"i"')
    assert dumps({1: {2, 3}}) in (b'{"1":[2,3]}', b'{"1":[3,2]}')
