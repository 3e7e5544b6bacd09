"""API runs of the ``agent`` assistant execute in agent actors: which agent, and what happens to
its runs when it dies.

``choose_agent_host`` picks a free agent (no task and no run in hand), spawns one through the
fleet when none is free (within the fleet's cap), or, at the cap, takes the least busy one.
Agents are never restarted, so the runs of a dead agent are adopted by a live host (the
orchestrator actor's run host, from its watchdog): running ones go back to the queue (or fail
after ``run_max_attempts``), and all of them start again there.
"""

from __future__ import annotations

import asyncio
import logging

import ray

from actors.common import AGENT_PREFIX, FLEET, HandleCache, actor_name
from actors.fleet import FleetCapacityError
from actors.warm_pool import WARM_KIND
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from runs import queue
from runs.host import RunHost

log = logging.getLogger(__name__)
SPAWN_KIND = WARM_KIND
"""The kind spawned for API runs: the kind delegation asks for too, so the agent serves both."""


async def _busy(handles: HandleCache, agent_id: str) -> float:
    try:
        status = await handles.get(agent_id).status.remote()
    except Exception:  # noqa: BLE001 - dead or unreachable: never the one to choose
        handles.forget(agent_id)
        return float("inf")
    return len(status["running_tasks"]) + status.get("running_runs", 0)


async def choose_agent_host(handles: HandleCache, settings: Settings) -> str | None:
    """The run-host name (the agent's actor name) for a new agent run; None without a fleet."""
    try:
        fleet = handles.get(FLEET)
    except ValueError:  # no fabric
        return None
    agents = [a for a in await fleet.list.remote() if a.healthy]
    loads = await asyncio.gather(*(_busy(handles, a.agent_id) for a in agents))
    free = [a for a, load in zip(agents, loads, strict=True) if load == 0]
    if free:
        fleet.refill.remote(free[0].agent_id)  # one idle agent fewer: the warm pool (if any) tops itself up
        return actor_name(settings, free[0].agent_id)
    try:
        spawned = await fleet.spawn.remote({"kind": SPAWN_KIND})
        fleet.refill.remote(spawned.agent_id)
        return actor_name(settings, spawned.agent_id)
    except FleetCapacityError:
        alive = [(load, a.agent_id) for a, load in zip(agents, loads, strict=True) if load != float("inf")]
        return actor_name(settings, min(alive)[1]) if alive else None


async def adopt_runs_of_dead_agents(host: RunHost, settings: Settings) -> list[str]:
    """Move the runs of agents whose actor is gone to ``host`` and start them there."""
    await host.ready()
    prefix = settings.actor_name_prefix + AGENT_PREFIX
    async with host.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT DISTINCT executor FROM qr_runs WHERE status IN ('pending', 'running') "
            "AND starts_with(executor, %s)", (prefix,))
        hosts = [row["executor"] for row in await cursor.fetchall()]
    adopted: list[str] = []
    for name in hosts:
        if _alive(name):
            continue
        # Its running runs go back to the queue (or fail after their attempts), still its own...
        await queue.recover(host.pool, name, [name], settings.run_max_attempts, adopt_orphans=False)
        async with host.pool.connection() as conn:  # ...then every pending one becomes the adopter's
            cursor = await conn.execute(
                "UPDATE qr_runs SET executor = %s, updated_at = now() WHERE executor = %s AND status = 'pending' "
                "RETURNING run_id", (host.name, name))
            run_ids = [str(row["run_id"]) for row in await cursor.fetchall()]
        log.warning("run host %s: adopting runs %s of the dead agent %s", host.name, run_ids, name)
        for run_id in run_ids:
            await host.submit(run_id)
        adopted += run_ids
    return adopted


def _alive(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True

