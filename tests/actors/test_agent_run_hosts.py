"""Which agent hosts an API run of assistant `agent`: free, else spawned, else the least busy.

Fakes stand in for the fleet and agent actor handles (the calls have Ray's ``.remote`` shape);
tests/e2e/test_run_routing.py runs the real thing.
"""

from __future__ import annotations

from typing import Any

from actors.agent_run_hosts import choose_agent_host
from actors.common import FLEET, actor_name
from actors.fleet import FleetCapacityError
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.fleet import AgentInfo


class _Call:
    def __init__(self, fn):
        self.fn = fn

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class _Fire:
    """A fire-and-forget actor call (Ray's ``.remote()`` returns at once)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def remote(self, *args) -> None:
        self.calls.append(args)


class _Fleet:
    def __init__(self, agents: list[str], cap: int):
        self.agents, self.cap, self.spawned = list(agents), cap, []
        self.list = _Call(lambda: [AgentInfo(agent_id=a, kind="coder") for a in self.agents])
        self.spawn = _Call(self._spawn)
        self.refill = _Fire()

    def _spawn(self, request: dict) -> AgentInfo:
        if len(self.agents) >= self.cap:
            raise FleetCapacityError("cap")
        agent_id = f"coder-{len(self.agents)}"
        self.agents.append(agent_id)
        self.spawned.append(request["kind"])
        return AgentInfo(agent_id=agent_id, kind=request["kind"])


class _Agent:
    def __init__(self, tasks: int = 0, runs: int = 0, dead: bool = False):
        def status() -> dict:
            if dead:
                raise RuntimeError("actor died")
            return {"running_tasks": [f"t{i}" for i in range(tasks)], "running_runs": runs}

        self.status = _Call(status)


class _Handles:
    def __init__(self, handles: dict[str, Any]):
        self.handles = handles

    def get(self, address: str) -> Any:
        if address not in self.handles:
            raise ValueError(f"no actor {address}")
        return self.handles[address]

    def forget(self, address: str) -> None:
        pass


SETTINGS = Settings(_env_file=None, actor_name_prefix="t-")


async def test_a_free_agent_is_chosen_before_spawning_one():
    fleet = _Fleet(["busy", "free"], cap=4)
    handles = _Handles({FLEET: fleet, "busy": _Agent(runs=1), "free": _Agent()})
    assert await choose_agent_host(handles, SETTINGS) == actor_name(SETTINGS, "free") == "t-agent:free"
    assert fleet.spawned == []
    assert fleet.refill.calls == [("free",)]  # the warm pool is told which idle agent was taken


async def test_with_every_agent_busy_one_is_spawned_within_the_cap():
    fleet = _Fleet(["a"], cap=2)
    handles = _Handles({FLEET: fleet, "a": _Agent(tasks=1)})
    assert await choose_agent_host(handles, SETTINGS) == actor_name(SETTINGS, "coder-1")
    assert fleet.spawned == ["coder"]


async def test_at_the_cap_the_least_busy_live_agent_takes_it():
    fleet = _Fleet(["a", "b", "gone"], cap=3)
    handles = _Handles({FLEET: fleet, "a": _Agent(tasks=1, runs=2), "b": _Agent(runs=1), "gone": _Agent(dead=True)})
    assert await choose_agent_host(handles, SETTINGS) == actor_name(SETTINGS, "b")


async def test_without_a_fleet_or_any_live_agent_there_is_no_agent_host():
    assert await choose_agent_host(_Handles({}), SETTINGS) is None
    fleet = _Fleet(["gone"], cap=1)
    assert await choose_agent_host(_Handles({FLEET: fleet, "gone": _Agent(dead=True)}), SETTINGS) is None
