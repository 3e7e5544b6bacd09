"""Small things every actor of the fabric shares: names, import paths, pools, JSON, handles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from actors.local_channel import ChannelPool, socket_path
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.import_paths import (  # noqa: F401 - re-exported for the actors
    ImportPathError,
    accepted_parameters,
    call_with_supported,
    load_object,
)
from quadracode_ray.persistence import open_async_pool

log = logging.getLogger(__name__)

REGISTRY, EVENTS, FLEET, ORCHESTRATOR = "registry", "events", "fleet", "orchestrator"
SINGLETONS = (EVENTS, REGISTRY, FLEET, ORCHESTRATOR)
AGENT_PREFIX = "agent:"


class FabricError(RuntimeError):
    """A fabric operation failed; the message says which and why."""


def actor_name(settings: Settings, address: str) -> str:
    """The Ray actor name of a logical address (``orchestrator``, an agent id, ...)."""
    if address in SINGLETONS:
        return settings.actor_name_prefix + address
    return settings.actor_name_prefix + AGENT_PREFIX + address


async def open_fabric_pool(settings: Settings, *, name: str, max_size: int | None = None) -> AsyncConnectionPool:
    """A pool for fabric writes; without synchronous commit unless the settings ask for it."""
    if not settings.database_url:
        raise FabricError("the actor fabric needs a resolved database_url (ensure_system resolves it)")
    url = settings.database_url
    if not settings.fabric_synchronous_commit:
        url = make_conninfo(url, options="-c synchronous_commit=off")
    return await open_async_pool(url, min_size=1, max_size=max_size or settings.db_pool_max_size, name=name)


def get_actor(settings: Settings, address: str) -> ray.actor.ActorHandle:
    return ray.get_actor(actor_name(settings, address), namespace=NAMESPACE)


class HandleCache:
    """Handles by address, looked up once; forget() after a call fails so the next looks again.

    Also the sender's side of same-node delivery: ``channels`` and ``channel_path``."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._handles: dict[str, Any] = {}
        self._node_id: str | None = None
        self.channels = ChannelPool()

    def channel_path(self, address: str) -> Path | None:
        """Where ``address`` would listen if it lived on this node (None: channels are off)."""
        if not self._settings.fabric_local_channel:
            return None
        if self._node_id is None:
            self._node_id = ray.get_runtime_context().get_node_id()
        return socket_path(self._settings.fabric_channel_dir, self._node_id, actor_name(self._settings, address))

    def get(self, address: str) -> Any:
        handle = self._handles.get(address)
        if handle is None:
            handle = get_actor(self._settings, address)
            self._handles[address] = handle
        return handle

    def put(self, address: str, handle: Any) -> None:
        self._handles[address] = handle

    def forget(self, address: str) -> None:
        self._handles.pop(address, None)


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Graph state and updates as plain JSON (messages and models dumped, the rest as text)."""
    if _depth > 50:
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return to_jsonable(dump(mode="json"), _depth + 1)
        except Exception:  # noqa: BLE001 - some models refuse mode=json; fall back to python mode
            return to_jsonable(dump(), _depth + 1)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


TRANSIENT_START_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)


async def start_with_retries(start: Callable[[], Any], what: str) -> None:
    """Run an actor's async start, retrying while what it needs (Postgres, another actor) is
    not up yet; a configuration error (bad import path, ...) fails at once with its message."""
    import psycopg
    import psycopg_pool

    transient = (*TRANSIENT_START_ERRORS, psycopg.OperationalError, psycopg_pool.PoolTimeout, ray.exceptions.RayError)
    delay = 0.2
    while True:
        try:
            await start()
            return
        except transient as exc:
            log.warning("%s: start failed (%s); retrying in %.1f s", what, exc, delay)
            # A retry delay while a dependency comes up, not synchronisation.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def spawn_background(tasks: set[asyncio.Task], coro: Any, *, name: str) -> asyncio.Task:
    """Start a task kept alive by ``tasks`` and whose failure is logged, never swallowed."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    tasks.add(task)

    def _done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task %s failed", name, exc_info=t.exception())

    task.add_done_callback(_done)
    return task
