"""The fleet's warm pool: idle agents kept ready, so an agent run starts without a spawn.

A spawn takes seconds (a Ray worker process, registration, then the workspace's sandbox on the
first run); with ``fleet_warm_agents`` set, the fleet manager keeps that many idle agents of the
kind API runs use, each with its run host open and its workspace started, and refills the pool
in the background whenever an agent is taken (``FleetManager.refill``) and every few seconds.
It never spawns past the fleet's cap: the pool is a share of the cap, not an addition to it.
"""

from __future__ import annotations

WARM_KIND = "coder"
"""The kind kept warm: the kind API runs of assistant `agent` and delegation spawn."""


def agents_to_spawn(*, target: int, idle: int, live: int, starting: int, cap: int) -> int:
    """How many agents a refill spawns: enough for ``target`` idle ones, never past the cap."""
    return max(0, min(target - idle - starting, cap - live - starting))


def is_idle(status: dict) -> bool:
    """An agent's ``status()`` says it holds no task and no run."""
    return not status.get("running_tasks") and not status.get("running_runs")
