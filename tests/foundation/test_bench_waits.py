"""The watchers bench's wait: done when everything came, stopped early when progress stops."""

import time

import pytest

from bench.watchers import Stalled, until_complete


async def test_returns_once_everything_came() -> None:
    counts = iter([(0, 3), (1, 3), (3, 3)])

    async def progress() -> tuple[int, int]:
        return next(counts)

    await until_complete(progress, stalled_after_s=5, deadline_s=30, what="events")


async def test_stops_when_progress_stops_long_before_the_deadline() -> None:
    async def progress() -> tuple[int, int]:
        return 49, 50

    started = time.monotonic()
    with pytest.raises(Stalled, match="task results: 49 of 50, none more in the last 1 s"):
        await until_complete(progress, stalled_after_s=1, deadline_s=600, what="task results")
    assert time.monotonic() - started < 10


async def test_slow_but_steady_progress_is_not_a_stall_until_the_deadline() -> None:
    done = [0]

    async def progress() -> tuple[int, int]:
        done[0] += 1
        return done[0], 10**6

    with pytest.raises(Stalled, match="after 1 s"):
        await until_complete(progress, stalled_after_s=0.5, deadline_s=1, what="events")
