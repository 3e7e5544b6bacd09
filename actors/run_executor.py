"""Run-executor actors: execute API runs of user graphs off the HTTP path and stream their output.

Each executor is a named, restartable async actor (``run-executor-<db>-<i>`` in namespace
``quadracode``) around a ``RunHost`` (``runs/host.py``), which does the work: a replica
inserts a run into the durable queue (``qr_runs``) and pushes its id here with ``submit``; the
run starts at once when its thread is free; any replica reads its output with the streaming
generator ``events``. On (re)start the host recovers the runs it was running.
"""

from __future__ import annotations

import hashlib

import ray

from actors.fabric_clients import fabric_configurable
from actors.run_hosting import RayForward, RunHostCalls
from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.persistence.bootstrap import resolve_database_url
from quadracode_ray.ray_metrics import install_ray_metrics
from runs.host import RunHost


def executor_names(settings: Settings, database_url: str) -> list[str]:
    """The pool's actor names; keyed by database so deployments on other databases never mix."""
    key = hashlib.sha1(database_url.encode()).hexdigest()[:10]
    return [f"run-executor-{key}-{i}" for i in range(settings.run_executors)]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class RunExecutor(RunHostCalls):
    """A run host as an actor (the calls: RunHostCalls)."""

    def __init__(self, name: str, settings: Settings, database_url: str, pool_names: list[str]):
        install_ray_metrics(settings.actor_name_prefix)
        tracing.configure_tracing(settings, "run-executor")
        self.name = name
        fabric_settings = settings.model_copy(update={"database_url": database_url})
        self.run_host = RunHost(name, settings, database_url, pool_names=pool_names,
                                adopt_orphans=name == pool_names[0],
                                clients=lambda graph_id: fabric_configurable(graph_id, fabric_settings),
                                forward=RayForward())
        self.run_host.start()

    async def ready(self) -> str:
        return await self.run_host.ready()


def database_url_for(settings: Settings) -> str:
    return resolve_database_url(settings)[0]
