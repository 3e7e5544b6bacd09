"""The actors that host API runs, as seen from an API replica, and the routing of runs to them.

``choose_host`` is the one place that decides which actor executes a run: runs of the
``orchestrator`` graph go to the orchestrator actor and runs of the ``agent`` graph to an agent
actor (``actors/agent_run_hosts.py``: a free one, else one spawned within the fleet's cap), when
the fabric runs and those graphs are the built-in ones (a user's graph of the same name
replaces a built-in and runs where user graphs run); every other run (and those, without the fabric) to a run-executor of the pool
picked by thread (runs of one thread share an executor, so a
follow-up run starts in the same process). Every host answers ``submit_run``, ``cancel_run``,
``run_events`` and ``run_stats``; a run's row names its host (``qr_runs.executor``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

import ray

from actors.agent_run_hosts import choose_agent_host
from actors.common import FLEET, ORCHESTRATOR, HandleCache, actor_name
from actors.run_executor import RunExecutor, executor_names
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.graph_specs import replaced_builtins

log = logging.getLogger(__name__)
HOST_LOOKUP_RETRY_S = 5.0


class ExecutorPool:
    def __init__(self, settings: Settings, database_url: str):
        self.settings = settings
        self.database_url = database_url
        self.names = executor_names(settings, database_url)
        self.orchestrator = actor_name(settings, ORCHESTRATOR)
        self.fleet = actor_name(settings, FLEET)
        self.fabric = HandleCache(settings)
        self._handles: dict[str, Any] = {}
        self._missing: dict[str, float] = {}  # hosts outside the pool looked up and not found: when
        self.replaced_builtins = set(replaced_builtins(settings))  # user graphs named like a built-in

    async def start(self) -> None:
        """Create (or find) every executor of the pool and wait until each is ready."""
        handles = [self.handle(name) for name in self.names]
        await asyncio.gather(*(h.ready.remote() for h in handles))

    def handle(self, name: str):
        handle = self._handles.get(name)
        if handle is None:
            if name in self.names:
                handle = RunExecutor.options(
                    name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                ).remote(name, self.settings, self.database_url, self.names)
            else:  # a host of the fabric (the orchestrator actor): found, never created here
                handle = ray.get_actor(name, namespace=NAMESPACE)
            self._handles[name] = handle
        return handle

    def _host_exists(self, name: str) -> bool:
        """Whether a fabric actor ``name`` exists; a miss is remembered for a few seconds."""
        if name in self._handles:
            return True
        missed = self._missing.get(name)
        if missed is not None and time.monotonic() - missed < HOST_LOOKUP_RETRY_S:
            return False
        try:
            self.handle(name)
        except ValueError:  # no such actor: the Serve app runs without the fabric
            self._missing[name] = time.monotonic()
            return False
        return True

    def forget(self, name: str) -> None:
        """Drop a cached handle (its actor died for good); the next use recreates it."""
        self._handles.pop(name, None)

    async def choose_host(self, run: dict) -> str:
        """The host a new run is pushed to (the routing decision, in one place)."""
        graph_id = run["graph_id"]
        if graph_id in self.replaced_builtins:
            pass  # a user's graph: the run-executor pool below
        elif graph_id == "orchestrator" and self._host_exists(self.orchestrator):
            return self.orchestrator
        elif graph_id == "agent" and self._host_exists(self.fleet):
            try:
                host = await choose_agent_host(self.fabric, self.settings)
            except Exception as exc:  # noqa: BLE001 - the pool runs it rather than the run failing
                log.warning("no agent for an agent run (%s); it runs in the run-executor pool", exc)
                host = None
            if host is not None:
                return host
        key = str(run["thread_id"]).encode()
        return self.names[zlib.crc32(key) % len(self.names)]

    async def kill_all(self) -> None:
        """Stop every executor of this pool (tests, shutdown); queued runs stay in Postgres."""
        for name in self.names:
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            except ValueError:
                pass
            self.forget(name)
