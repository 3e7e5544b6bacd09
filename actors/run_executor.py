"""Run-executor actors: execute API runs of user graphs off the HTTP path and stream their output.

Each executor is a named, restartable async actor (``run-executor-<db>-<i>`` in namespace
``quadracode``) around a ``RunHost`` (``actors/run_host.py``), which does the work: a replica
inserts a run into the durable queue (``qr_runs``) and pushes its id here with ``submit``; the
run starts at once when its thread is free; any replica reads its output with the streaming
generator ``events``. On (re)start the host recovers the runs it was running.
"""

from __future__ import annotations

import hashlib
from typing import Any

import ray

from actors.fabric_clients import fabric_configurable
from actors.run_host import RayForward, RunHost
from quadracode_ray.config import Settings
from quadracode_ray.persistence.bootstrap import resolve_database_url


def executor_names(settings: Settings, database_url: str) -> list[str]:
    """The pool's actor names; keyed by database so deployments on other databases never mix."""
    key = hashlib.sha1(database_url.encode()).hexdigest()[:10]
    return [f"run-executor-{key}-{i}" for i in range(settings.run_executors)]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class RunExecutor:
    """A run host as an actor. Every actor that hosts API runs answers the same calls:
    ``submit_run``, ``cancel_run``, ``run_events`` (streaming) and ``run_stats``."""

    def __init__(self, name: str, settings: Settings, database_url: str, pool_names: list[str]):
        self.name = name
        fabric_settings = settings.model_copy(update={"database_url": database_url})
        self.host = RunHost(name, settings, database_url, pool_names=pool_names,
                            adopt_orphans=name == pool_names[0],
                            clients=lambda graph_id: fabric_configurable(graph_id, fabric_settings),
                            forward=RayForward())
        self.host.start()

    async def ready(self) -> str:
        return await self.host.ready()

    async def submit_run(self, run_id: str) -> None:
        await self.host.submit(run_id)

    async def cancel_run(self, run_id: str, action: str = "interrupt") -> bool:
        """Stop a run this executor holds. Returns False when it is neither running nor pending."""
        return await self.host.cancel(run_id, action)

    async def run_events(self, run_id: str, after: int = -1):
        """Streaming generator: batches of (seq, event, data) with seq > after, until the run ends."""
        async for items in self.host.events(run_id, after):
            yield items

    async def run_stats(self) -> dict[str, Any]:
        return await self.host.stats()


def database_url_for(settings: Settings) -> str:
    return resolve_database_url(settings)[0]
