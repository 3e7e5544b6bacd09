"""The one reader of a thread's tape that every v3 stream of a replica follows (pure asyncio;
serve_app/runs/v3_tape.py; over HTTP: test_v3_streams.py)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from serve_app.runs.v3_session import V3Session
from serve_app.runs.v3_tape import TapeStopped, _SharedTape

REQUEST = contextvars.ContextVar("request")


async def _one_batch_then_quiet(seen: list):
    seen.append(REQUEST.get(None))
    yield [{"seq": 1}]
    await asyncio.Event().wait()  # a thread with nothing more to say


async def test_the_reader_is_not_in_the_context_of_the_request_that_opened_it() -> None:
    # Ray cancels the Ray calls made in a request's context when the request is cancelled (its
    # client left); the reader makes Ray calls for every stream of the thread, so it has its own.
    seen: list = []
    REQUEST.set("the first stream's request")
    tape = _SharedTape(_one_batch_then_quiet(seen), V3Session())
    try:
        assert await asyncio.wait_for(anext(tape.follow()), 5) == [{"seq": 1}]
        assert seen == [None]
    finally:
        tape.task.cancel()


async def test_streams_on_a_reader_that_stops_end_with_it_instead_of_waiting_forever() -> None:
    tape = _SharedTape(_one_batch_then_quiet([]), V3Session())
    follower = tape.follow()
    assert await asyncio.wait_for(anext(follower), 5) == [{"seq": 1}]
    waiting = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)  # the follower waits for more now
    assert not waiting.done()
    tape.task.cancel()
    with pytest.raises(TapeStopped):
        await asyncio.wait_for(waiting, 5)
    # A stream that comes later gets what was read, then ends too.
    later = tape.follow()
    assert await asyncio.wait_for(anext(later), 5) == [{"seq": 1}]
    with pytest.raises(TapeStopped):
        await asyncio.wait_for(anext(later), 5)
