"""Start (or find) the fabric's singleton actors: one call, safe from many processes at once.

``ensure_system(settings)`` gets-or-creates the event bus, registry, fleet manager and
orchestrator in namespace ``quadracode`` (``get_if_exists=True`` makes creation race-free:
every caller gets the same actors) and waits until each answers. The singletons are
detached and restart forever (``max_restarts=-1``); calls made while one restarts are
retried by Ray (``max_task_retries=-1``), which is safe because every handler is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from actors.common import AGENT_PREFIX, EVENTS, FLEET, ORCHESTRATOR, REGISTRY, actor_name
from actors.events import EventBus
from actors.fleet import FleetManager
from actors.orchestrator import Orchestrator
from actors.registry import Registry
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.persistence.bootstrap import resolve_database_url
from sandbox.actor import ACTOR_NAME_PREFIX as WORKSPACE_ACTOR_PREFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemHandles:
    settings: Settings
    events: Any
    registry: Any
    fleet: Any
    orchestrator: Any


def _singleton_options(settings: Settings, address: str) -> dict[str, Any]:
    return {"name": actor_name(settings, address), "namespace": NAMESPACE, "lifetime": "detached",
            "get_if_exists": True, "max_restarts": -1, "max_task_retries": -1, "num_cpus": 0,
            **({"resources": dict(settings.fabric_resources)} if settings.fabric_resources else {})}


def _resolved(settings: Settings) -> Settings:
    if settings.database_url:
        return settings
    url, _ = resolve_database_url(settings)
    return settings.model_copy(update={"database_url": url})


def create_system(settings: Settings) -> SystemHandles:
    """Get-or-create the singletons without waiting for them (see ensure_system)."""
    settings = _resolved(settings)
    if not ray.is_initialized():
        ray.init(address="auto", namespace=NAMESPACE)
    return SystemHandles(
        settings=settings,
        events=EventBus.options(**_singleton_options(settings, EVENTS)).remote(settings),
        registry=Registry.options(**_singleton_options(settings, REGISTRY)).remote(settings, [ORCHESTRATOR]),
        fleet=FleetManager.options(**_singleton_options(settings, FLEET)).remote(settings),
        orchestrator=Orchestrator.options(**_singleton_options(settings, ORCHESTRATOR)).remote(settings),
    )


def ensure_system(settings: Settings, *, timeout_s: float = 120.0) -> SystemHandles:
    """Get-or-create every singleton and wait until each is ready (blocking; for builders and CLIs)."""
    handles = create_system(settings)
    ray.get([h.ready.remote() for h in (handles.events, handles.registry, handles.fleet, handles.orchestrator)],
            timeout=timeout_s)
    return handles


async def ensure_system_async(settings: Settings, *, timeout_s: float = 120.0) -> SystemHandles:
    """``ensure_system`` for code already inside an event loop."""
    handles = await asyncio.to_thread(create_system, settings)
    await wait_until_ready(handles, timeout_s)
    return handles


async def wait_until_ready(handles: SystemHandles, timeout_s: float = 120.0) -> None:
    """Wait (without blocking the event loop) until every singleton of ``create_system`` answers."""
    await asyncio.wait_for(asyncio.gather(*(h.ready.remote() for h in (
        handles.events, handles.registry, handles.fleet, handles.orchestrator))), timeout_s)


def system_actor_names(settings: Settings) -> list[str]:
    """Names of every live actor of this installation (singletons, agents, workspaces) in the namespace."""
    prefix = settings.actor_name_prefix
    owned_prefixes = (prefix + AGENT_PREFIX, prefix + WORKSPACE_ACTOR_PREFIX)
    singletons = {actor_name(settings, a) for a in (EVENTS, REGISTRY, FLEET, ORCHESTRATOR)}
    names = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != NAMESPACE:
            continue
        if entry["name"] in singletons or entry["name"].startswith(owned_prefixes):
            names.append(entry["name"])
    return names


def shutdown_system(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Kill every actor of this installation (data in Postgres is kept); returns their names.

    Workspaces go last, once every agent is gone: an agent that outlived its workspace actor
    would see its command cut off and report the task failed, where the task is in truth only
    interrupted (the orchestrator gives it to a new agent after the next bootstrap)."""
    names = system_actor_names(settings)
    users = [name for name in names if not name.startswith(settings.actor_name_prefix + WORKSPACE_ACTOR_PREFIX)]
    killed = _kill(users)
    deadline = time.monotonic() + timeout_s
    while set(users) & set(system_actor_names(settings)) and time.monotonic() < deadline:
        time.sleep(0.05)  # a name is released once its actor is dead; ray.kill does not wait for that
    return killed + _kill([name for name in names if name not in users])


def _kill(names: list[str]) -> list[str]:
    killed = []
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            killed.append(name)
        except ValueError:
            pass
    return killed
