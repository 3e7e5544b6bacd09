"""The run-executor pool as seen from an API replica, and the routing of runs to executors.

``choose_executor`` is the one place that decides which actor executes a run: today a
run-executor picked by thread (runs of one thread share an executor, so a follow-up run
starts in the same process); orchestrator-assistant runs will be routed here later.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import ray

from actors.run_executor import RunExecutor, executor_names
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings


class ExecutorPool:
    def __init__(self, settings: Settings, database_url: str):
        self.settings = settings
        self.database_url = database_url
        self.names = executor_names(settings, database_url)
        self._handles: dict[str, Any] = {}

    async def start(self) -> None:
        """Create (or find) every executor of the pool and wait until each is ready."""
        handles = [self.handle(name) for name in self.names]
        await asyncio.gather(*(h.ready.remote() for h in handles))

    def handle(self, name: str):
        handle = self._handles.get(name)
        if handle is None:
            handle = RunExecutor.options(
                name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
            ).remote(name, self.settings, self.database_url, self.names)
            self._handles[name] = handle
        return handle

    def forget(self, name: str) -> None:
        """Drop a cached handle (its actor died for good); the next use recreates it."""
        self._handles.pop(name, None)

    def choose_executor(self, run: dict) -> str:
        """The executor a new run is pushed to (the routing decision, in one place)."""
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
