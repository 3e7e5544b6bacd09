"""The warm pool's arithmetic: how many agents a refill spawns, and what counts as idle."""

from __future__ import annotations

import pytest

from actors.warm_pool import agents_to_spawn, is_idle


@pytest.mark.parametrize(("target", "idle", "live", "starting", "cap", "expected"), [
    (2, 0, 0, 0, 10, 2),   # empty fleet: fill the pool
    (2, 2, 2, 0, 10, 0),   # full pool: nothing
    (2, 1, 5, 0, 10, 1),   # one taken: one more
    (2, 0, 0, 1, 10, 1),   # one already starting counts
    (3, 0, 9, 0, 10, 1),   # the cap bounds the pool
    (3, 0, 10, 0, 10, 0),  # at the cap: nothing
    (0, 0, 0, 0, 10, 0),   # no pool
    (2, 5, 5, 0, 10, 0),   # more idle than wanted: never negative
])
def test_agents_to_spawn(target, idle, live, starting, cap, expected):
    assert agents_to_spawn(target=target, idle=idle, live=live, starting=starting, cap=cap) == expected


def test_is_idle():
    assert is_idle({"running_tasks": [], "running_runs": 0})
    assert not is_idle({"running_tasks": ["t1"], "running_runs": 0})
    assert not is_idle({"running_tasks": [], "running_runs": 1})
