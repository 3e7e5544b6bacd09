"""The fleet's warm pool on real Ray and Postgres: filled at start with warmed agents, refilled
when agents become busy, never past the fleet's cap."""

from __future__ import annotations

import uuid

import ray

from actors.common import actor_name
from quadracode_ray import NAMESPACE
from quadracode_ray.envelope import TASK, Envelope
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {"fleet_warm_agents": 2, "fleet_max_agents": 3}


async def _stats(system) -> dict:
    return await system.fleet.stats.remote()


async def _statuses(system) -> dict[str, dict]:
    agents = await system.fleet.list.remote()
    handles = {a.agent_id: ray.get_actor(actor_name(system.settings, a.agent_id), namespace=NAMESPACE)
               for a in agents}
    return {agent_id: await handle.status.remote() for agent_id, handle in handles.items()}


async def _make_busy(system, agent_id: str) -> None:
    """Give the agent a task the test brain never finishes (tests/actors/brains.py)."""
    handle = ray.get_actor(actor_name(system.settings, agent_id), namespace=NAMESPACE)
    task = {"task_id": uuid.uuid4().hex, "instruction": f"hang-on:{agent_id}", "parent_thread_id": "warm-test",
            "agent_id": agent_id}
    await handle.deliver.remote(Envelope(sender="warm-test", recipient=agent_id, kind=TASK, payload=task))
    await eventually(lambda: _busy(handle), what=f"{agent_id} busy")


async def _busy(handle) -> bool:
    return bool((await handle.status.remote())["running_tasks"])


async def test_pool_fills_refills_and_respects_the_cap(system):
    # Filled at start: two idle agents, each with its run host open and its workspace started.
    stats = await eventually(lambda: _full(system, live=2, warm=2), timeout=120, what="the pool filled")
    assert stats["warm_target"] == 2 and stats["cap"] == 3
    statuses = await _statuses(system)
    assert len(statuses) == 2 and all(s["warm"] for s in statuses.values()), statuses

    # One agent takes work: the pool spawns one more to have two idle again (3 live, the cap).
    first = sorted(statuses)[0]
    await _make_busy(system, first)
    system.fleet.refill.remote()
    await eventually(lambda: _full(system, live=3, warm=2), timeout=120, what="the pool refilled")

    # A second one takes work: two idle are wanted, but the cap allows no fourth agent.
    second = next(a for a in sorted(await _statuses(system)) if a != first)
    await _make_busy(system, second)
    system.fleet.refill.remote()
    stats = await eventually(lambda: _full(system, live=3, warm=1), timeout=60, what="the pool at the cap")
    assert stats["starting"] == 0
    assert len(await system.fleet.list.remote()) == 3


async def _full(system, *, live: int, warm: int) -> dict | None:
    stats = await _stats(system)
    return stats if stats["live"] == live and stats["warm"] == warm and stats["starting"] == 0 else None
