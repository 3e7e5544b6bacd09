"""The registry actor: which agents exist, where, what they can do, and whether they are alive.

State is in memory on purpose: agents re-register whenever a heartbeat is answered with
``known=False``, so after a restart of this actor the table converges within one heartbeat
interval without a database. A sweep reaps agents whose last heartbeat is older than the TTL
and tells each subscriber (the orchestrator) with an ``agent_lost`` envelope, delivered
at-least-once and de-duplicated by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from actors import fabric_metrics
from actors.common import REGISTRY, HandleCache, spawn_background
from actors.delivery import send
from quadracode_ray.config import Settings
from quadracode_ray.envelope import AGENT_LOST, Envelope
from quadracode_ray.interfaces.fleet import AgentInfo
from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE
from quadracode_ray.ray_metrics import install_ray_metrics

log = logging.getLogger(__name__)


class UnknownAgent(LookupError):
    """No agent with that id is registered (never was, was reaped, or deregistered)."""


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    agent_id: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=100)
    capabilities: list[str] = Field(default_factory=list)
    handle: Any = None
    """The agent's actor handle (None for agents reached some other way)."""
    node: str | None = None
    workspace_id: str = DEFAULT_WORKSPACE
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class _Entry:
    __slots__ = ("registration", "registered_at", "last_heartbeat", "incarnation")

    def __init__(self, registration: Registration, incarnation: int):
        self.registration = registration
        self.registered_at = datetime.now(UTC)
        self.last_heartbeat = time.monotonic()
        self.incarnation = incarnation


class RegistryState:
    """The registry's bookkeeping, free of Ray so it is tested as plain logic."""

    def __init__(self, ttl_s: float, clock=time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        self.incarnations = 0
        self.reaped_total = 0

    def register(self, registration: Registration) -> None:
        self.incarnations += 1
        entry = _Entry(registration, self.incarnations)
        entry.last_heartbeat = self.clock()
        self.entries[registration.agent_id] = entry

    def heartbeat(self, agent_id: str) -> bool:
        entry = self.entries.get(agent_id)
        if entry is None:
            return False
        entry.last_heartbeat = self.clock()
        return True

    def deregister(self, agent_id: str) -> bool:
        return self.entries.pop(agent_id, None) is not None

    def age(self, agent_id: str) -> float:
        return self.clock() - self.entries[agent_id].last_heartbeat

    def healthy(self, agent_id: str) -> bool:
        return agent_id in self.entries and self.age(agent_id) <= self.ttl_s

    def expired(self) -> list[_Entry]:
        now = self.clock()
        return [e for e in self.entries.values() if now - e.last_heartbeat > self.ttl_s]

    def reap(self) -> list[_Entry]:
        gone = self.expired()
        for entry in gone:
            del self.entries[entry.registration.agent_id]
        self.reaped_total += len(gone)
        return gone

    def info(self, agent_id: str) -> AgentInfo:
        entry = self.entries.get(agent_id)
        if entry is None:
            raise UnknownAgent(f"no agent {agent_id!r} is registered")
        reg = entry.registration
        return AgentInfo(agent_id=reg.agent_id, kind=reg.kind, capabilities=list(reg.capabilities),
                         workspace_id=reg.workspace_id, node=reg.node, healthy=self.healthy(agent_id),
                         hotpath=bool(reg.metadata.get("hotpath", False)),
                         last_heartbeat_age_s=round(self.age(agent_id), 3))

    def select(self, *, capability: str | None = None, kind: str | None = None,
               include_unhealthy: bool = False) -> list[AgentInfo]:
        found = []
        for agent_id, entry in self.entries.items():
            reg = entry.registration
            if capability is not None and capability not in reg.capabilities:
                continue
            if kind is not None and reg.kind != kind:
                continue
            if not include_unhealthy and not self.healthy(agent_id):
                continue
            found.append(self.info(agent_id))
        return found


@ray.remote(num_cpus=0)
class Registry:
    def __init__(self, settings: Settings, subscribers: list[str] | None = None):
        install_ray_metrics(settings.actor_name_prefix)
        self.settings = settings
        self.state = RegistryState(settings.registry_ttl_s)
        self.subscribers: list[str] = list(subscribers or [])
        self.handles = HandleCache(settings)
        self.started_at = datetime.now(UTC)
        self._tasks: set[asyncio.Task] = set()
        self._sweep_every = min(settings.heartbeat_interval_s, settings.registry_ttl_s / 3)
        spawn_background(self._tasks, self._sweep_loop(), name="registry-sweep")
        self._gauge()  # 0 from the start (a gauge never set is not exported at all)

    async def ready(self) -> bool:
        return True

    async def register(self, registration: Registration) -> AgentInfo:
        if not isinstance(registration, Registration):
            registration = Registration.model_validate(registration)
        self.state.register(registration)
        if registration.handle is not None:
            self.handles.put(registration.agent_id, registration.handle)
        self._gauge()
        return self.state.info(registration.agent_id)

    async def heartbeat(self, agent_id: str) -> dict[str, bool]:
        """``known`` False tells the agent to register again (after a restart of this actor)."""
        return {"known": self.state.heartbeat(agent_id)}

    async def deregister(self, agent_id: str) -> bool:
        removed = self.state.deregister(agent_id)
        self.handles.forget(agent_id)
        self._gauge()
        return removed

    async def get(self, agent_id: str) -> AgentInfo:
        return self.state.info(agent_id)

    async def get_handle(self, agent_id: str) -> Any:
        entry = self.state.entries.get(agent_id)
        if entry is None:
            raise UnknownAgent(f"no agent {agent_id!r} is registered")
        return entry.registration.handle

    async def list(self, capability: str | None = None, kind: str | None = None,
                   include_unhealthy: bool = False) -> list[AgentInfo]:
        return self.state.select(capability=capability, kind=kind, include_unhealthy=include_unhealthy)

    async def stats(self) -> dict[str, Any]:
        entries = list(self.state.entries)
        healthy = sum(1 for agent_id in entries if self.state.healthy(agent_id))
        by_kind: dict[str, int] = {}
        for entry in self.state.entries.values():
            by_kind[entry.registration.kind] = by_kind.get(entry.registration.kind, 0) + 1
        return {"registered": len(entries), "healthy": healthy, "by_kind": by_kind,
                "reaped_total": self.state.reaped_total, "ttl_s": self.state.ttl_s,
                "subscribers": list(self.subscribers), "started_at": self.started_at.isoformat()}

    async def subscribe(self, address: str) -> None:
        """Add a subscriber to reaps (constructor subscribers also survive a restart of this actor)."""
        if address not in self.subscribers:
            self.subscribers.append(address)

    async def sweep(self) -> list[str]:
        """Reap expired agents now and tell subscribers; returns the reaped ids."""
        gone = self.state.reap()
        for entry in gone:
            reg = entry.registration
            self.handles.forget(reg.agent_id)
            log.warning("registry: reaped agent %s (no heartbeat for > %.1f s)", reg.agent_id, self.state.ttl_s)
            for subscriber in self.subscribers:
                envelope = Envelope(
                    id=f"agent_lost:{reg.agent_id}:{entry.registered_at.timestamp():.6f}:{subscriber}",
                    sender=REGISTRY, recipient=subscriber, kind=AGENT_LOST,
                    payload={"agent_id": reg.agent_id, "kind": reg.kind, "workspace_id": reg.workspace_id,
                             "reason": f"no heartbeat for more than {self.state.ttl_s} s"},
                )
                spawn_background(self._tasks, send(self.handles, envelope, restartable=True,
                                                   deadline_s=max(60.0, self.state.ttl_s * 10)),
                                 name=f"notify:{envelope.id}")
        if gone:
            self._gauge()
        return [entry.registration.agent_id for entry in gone]

    async def _sweep_loop(self) -> None:
        while True:
            # The sweep is periodic by nature (time passing is the event); it is not a mailbox poll.
            await asyncio.sleep(self._sweep_every)
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - one bad sweep must not stop the next
                log.exception("registry sweep failed")

    def _gauge(self) -> None:
        fabric_metrics.agents_alive().set(len(self.state.entries), tags={"source": "registry"})
