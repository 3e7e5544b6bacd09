"""The fleet manager actor: spawns, lists and kills agents, under a cap, with hotpath protection.

The cap is atomic: the check and the reservation of a slot happen with no ``await`` between
them in this single actor, the only place agents are spawned, so concurrent spawns can
never exceed it. Spawned agents are recorded in ``qr_fleet_agents`` before their actor is
created, so the cap and the hotpath marks survive a restart of this actor. Agents are
detached Ray actors with resource requests: on a cluster they land on any node that fits.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import uuid
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from actors import fabric_metrics
from actors.common import (
    REGISTRY,
    HandleCache,
    actor_name,
    open_fabric_pool,
    spawn_background,
    start_with_retries,
)
from actors.warm_pool import WARM_KIND, agents_to_spawn, is_idle
from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.fleet import AgentInfo, FleetError
from quadracode_ray.interfaces.workspace import DEFAULT_WORKSPACE
from quadracode_ray.ray_metrics import install_ray_metrics

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0
START_ATTEMPTS = 2
"""A new agent whose process dies before its start answers (a segfault in a native library, the
OOM killer) is created once more under the same id; an exception in its own code is not retried."""


class FleetCapacityError(FleetError):
    """Spawning would exceed the cap on live agents (settings.fleet_max_agents)."""


class HotpathAgentError(FleetError):
    """The agent is on the hotpath: killing it needs force=True."""


class UnknownAgentError(FleetError, LookupError):
    """The fleet has no live agent with that id."""


class AgentStartTimeout(FleetError):
    """A new agent did not answer its start within START_TIMEOUT_S; it was killed, nothing kept."""


class AgentStartFailed(FleetError):
    """A new agent's process died before its start answered, START_ATTEMPTS times, or its constructor
    raised; it was removed, nothing kept."""


class SpawnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(default="coder", min_length=1, max_length=100, pattern=r"^[a-z0-9_-]+$")
    capabilities: list[str] = Field(default_factory=list, max_length=100)
    workspace_id: str = Field(default=DEFAULT_WORKSPACE, min_length=1, max_length=100)
    num_cpus: float | None = Field(default=None, ge=0, le=1024)
    memory_mb: int | None = Field(default=None, ge=16)
    resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources the agent needs (e.g. {"workspace": 0.01} on a cluster)."""
    hotpath: bool = False
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    agent_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")


class _Agent:
    __slots__ = ("agent_id", "kind", "capabilities", "workspace_id", "hotpath", "handle")

    def __init__(self, agent_id, kind, capabilities, workspace_id, hotpath, handle):
        self.agent_id, self.kind, self.capabilities = agent_id, kind, list(capabilities)
        self.workspace_id, self.hotpath, self.handle = workspace_id, hotpath, handle


@ray.remote(num_cpus=0)
class FleetManager:
    def __init__(self, settings: Settings):
        install_ray_metrics(settings.actor_name_prefix)
        self.settings = settings
        self.cap = settings.fleet_max_agents
        self.live: dict[str, _Agent] = {}
        self.reserved = 0
        self.handles = HandleCache(settings)
        self.warm_target = settings.fleet_warm_agents
        self.warm_idle = 0
        self._refill_wanted = asyncio.Event()
        self._taken: set[str] = set()
        self._background: set[asyncio.Task] = set()
        # Each agent is a new Ray worker importing its graph: seconds of CPU. Started all at once (50
        # spawns on 2 cores) every one of them shared the CPU until all missed START_TIMEOUT_S
        # together; started a few at a time, each start gets the CPU it needs and the rest wait.
        self._start_slots = asyncio.Semaphore(settings.fleet_start_concurrency)
        self.starting = self.most_starting = self.start_retries = 0
        self._started = asyncio.get_running_loop().create_task(start_with_retries(self._start, "fleet manager"))

    async def _start(self) -> None:
        if getattr(self, "pool", None) is None:  # kept across start retries
            self.pool = await open_fabric_pool(self.settings, name="fleet", max_size=4)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT agent_id, kind, capabilities, workspace_id, actor_name, hotpath FROM qr_fleet_agents "
                "WHERE alive AND actor_name LIKE %s ORDER BY spawned_at",
                (self.settings.actor_name_prefix.replace("%", r"\%") + "%",))).fetchall()
        for row in rows:
            try:
                handle = ray.get_actor(row["actor_name"], namespace=NAMESPACE)
            except ValueError:
                await self._ended(row["agent_id"], "gone while the fleet manager was down")
                continue
            caps = row["capabilities"] if isinstance(row["capabilities"], list) else json.loads(row["capabilities"])
            self.live[row["agent_id"]] = _Agent(row["agent_id"], row["kind"], caps, row["workspace_id"],
                                                row["hotpath"], handle)
        self._gauge()
        if self.warm_target:
            self._start_pool()

    async def ready(self) -> bool:
        await self._started
        return True

    async def spawn(self, request: SpawnRequest | dict[str, Any]) -> AgentInfo:
        await self._started
        request = request if isinstance(request, SpawnRequest) else SpawnRequest.model_validate(request)
        if len(self.live) + self.reserved >= self.cap:
            await self._drop_dead()
        # Atomic: no await between the check and the reservation.
        if len(self.live) + self.reserved >= self.cap:
            raise FleetCapacityError(
                f"agent cap reached: {len(self.live)} live and {self.reserved} starting of at most {self.cap}; "
                "kill an agent or raise QUADRACODE_FLEET_MAX_AGENTS")
        self.reserved += 1
        agent_id = request.agent_id or f"{request.kind}-{uuid.uuid4().hex[:10]}"
        name = actor_name(self.settings, agent_id)
        try:
            if agent_id in self.live:
                raise FleetError(f"an agent with id {agent_id!r} is already alive")
            async with self.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO qr_fleet_agents (agent_id, kind, capabilities, workspace_id, actor_name, hotpath) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (agent_id, request.kind, json.dumps(request.capabilities), request.workspace_id, name,
                     request.hotpath))
            options: dict[str, Any] = {
                "name": name, "namespace": NAMESPACE, "lifetime": "detached",
                "num_cpus": self.settings.agent_num_cpus if request.num_cpus is None else request.num_cpus,
            }
            memory_mb = request.memory_mb or self.settings.agent_memory_mb
            if memory_mb:
                options["memory"] = memory_mb * 1024 * 1024
            if request.resources:
                options["resources"] = dict(request.resources)
            async with self._start_slots:
                info, handle = await self._start_agent(agent_id, request, options)
            self.live[agent_id] = _Agent(agent_id, request.kind, request.capabilities, request.workspace_id,
                                         request.hotpath, handle)
        finally:
            self.reserved -= 1
        self._gauge()
        return info.model_copy(update={"hotpath": request.hotpath})

    async def _start_agent(self, agent_id: str, request: SpawnRequest, options: dict[str, Any]) -> tuple[AgentInfo, Any]:
        self.starting += 1
        self.most_starting = max(self.most_starting, self.starting)
        attempt = 1
        try:
            while True:
                handle = (await _agent_actor_class()).options(**options).remote(
                    agent_id, request.kind, request.capabilities, request.workspace_id, self.settings,
                    {**request.metadata, "hotpath": request.hotpath})
                try:
                    return await asyncio.wait_for(handle.start.remote(), timeout=START_TIMEOUT_S), handle
                except BaseException as exc:
                    ray.kill(handle, no_restart=True)
                    died = isinstance(exc, ray.exceptions.ActorDiedError)
                    if died and not exc.actor_init_failed and attempt < START_ATTEMPTS:
                        # Dead before start answered: its name is free again, and a registration it
                        # made is replaced by the new process's own.
                        self.start_retries += 1
                        attempt += 1
                        log.warning("agent %s: its process died while starting; starting it once more: %s",
                                    agent_id, exc)
                        continue
                    await self._ended(agent_id, "failed to start")
                    if isinstance(exc, TimeoutError):
                        raise AgentStartTimeout(f"agent {agent_id!r} did not start within {START_TIMEOUT_S:.0f} s "
                                                "(the machine may be short of CPU); it was removed, try again") from None
                    if died:
                        how = "its constructor raised" if exc.actor_init_failed else f"its process died at each of {attempt} starts"
                        raise AgentStartFailed(f"agent {agent_id!r} failed to start ({how}); it was removed: "
                                               f"{exc}") from None
                    raise
        finally:
            self.starting -= 1

    async def list(self, capability: str | None = None, kind: str | None = None) -> list[AgentInfo]:
        await self._started
        registered = {a.agent_id: a for a in await self.handles.get(REGISTRY).list.remote(include_unhealthy=True)}
        out = []
        for agent in self.live.values():
            if capability is not None and capability not in agent.capabilities:
                continue
            if kind is not None and agent.kind != kind:
                continue
            seen = registered.get(agent.agent_id)
            out.append(AgentInfo(agent_id=agent.agent_id, kind=agent.kind, capabilities=agent.capabilities,
                                 workspace_id=agent.workspace_id, node=seen.node if seen else None,
                                 healthy=bool(seen and seen.healthy), hotpath=agent.hotpath,
                                 last_heartbeat_age_s=seen.last_heartbeat_age_s if seen else None))
        return out

    async def get_handle(self, agent_id: str) -> Any:
        await self._started
        return self._agent(agent_id).handle

    async def kill(self, agent_id: str, force: bool = False) -> None:
        await self._started
        agent = self._agent(agent_id)
        if agent.hotpath and not force:
            raise HotpathAgentError(f"agent {agent_id} is on the hotpath; clear the mark or kill with force=True")
        try:
            await asyncio.wait_for(agent.handle.shutdown.remote(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - it may be dead or hung already; kill regardless
            log.info("fleet: shutdown of %s did not complete (%s); killing", agent_id, exc)
        ray.kill(agent.handle, no_restart=True)
        await self._ended(agent_id, "killed" + (" (forced)" if force else ""))

    async def forget(self, agent_id: str, reason: str) -> bool:
        """An agent was lost (reaped): make sure its actor is gone and free its slot."""
        await self._started
        agent = self.live.get(agent_id)
        if agent is None:
            return False
        ray.kill(agent.handle, no_restart=True)
        await self._ended(agent_id, reason)
        return True

    async def set_hotpath(self, agent_id: str, hotpath: bool = True) -> AgentInfo:
        await self._started
        agent = self._agent(agent_id)
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE qr_fleet_agents SET hotpath = %s WHERE agent_id = %s", (hotpath, agent_id))
        agent.hotpath = hotpath
        return next(a for a in await self.list() if a.agent_id == agent_id)

    async def stats(self) -> dict[str, Any]:
        await self._started
        return {"live": len(self.live), "starting": self.reserved, "cap": self.cap,
                "most_starting_at_once": self.most_starting, "start_retries": self.start_retries,
                "hotpath": sorted(a.agent_id for a in self.live.values() if a.hotpath),
                "warm": self.warm_idle, "warm_target": self.warm_target}

    # --- the warm pool (actors/warm_pool.py) -------------------------------------------------
    def refill(self, taken: str | None = None) -> None:
        """Agent ``taken`` was just given a run (or spawned for lack of an idle one): top the warm
        pool up soon, not counting it as idle (its run may not have started yet)."""
        if taken:
            self._taken.add(taken)
        self._refill_wanted.set()

    async def set_warm_target(self, target: int) -> dict[str, Any]:
        """Change how many idle agents the pool keeps (0: none; agents already idle stay)."""
        await self._started
        if not 0 <= target <= 10_000:
            raise FleetError(f"warm pool target must be between 0 and 10000, not {target}")
        self.warm_target = target
        if target:
            self._start_pool()
        return await self.stats()

    def _start_pool(self) -> None:
        self._refill_wanted.set()
        if not self._background:
            spawn_background(self._background, self._keep_warm(), name="fleet-warm-pool")

    async def _keep_warm(self) -> None:
        while True:
            try:  # woken by refill(), else a periodic look (agents also become busy by delegation)
                await asyncio.wait_for(self._refill_wanted.wait(), timeout=max(1.0, self.settings.heartbeat_interval_s))
            except TimeoutError:
                pass
            self._refill_wanted.clear()
            try:
                await self._refill()
            except Exception as exc:  # noqa: BLE001 - Postgres or Ray hiccup: the next look tries again
                log.warning("fleet: warm pool refill failed: %s", exc)

    async def _refill(self) -> None:
        if not self.warm_target:
            return
        taken, self._taken = self._taken, set()
        candidates = [a for a in self.live.values() if a.kind == WARM_KIND and not a.hotpath and a.agent_id not in taken]
        statuses = await asyncio.gather(*(asyncio.wait_for(a.handle.status.remote(), timeout=5) for a in candidates),
                                        return_exceptions=True)
        self.warm_idle = sum(1 for st in statuses if isinstance(st, dict) and is_idle(st))
        wanted = agents_to_spawn(target=self.warm_target, idle=self.warm_idle, live=len(self.live),
                                 starting=self.reserved, cap=self.cap)
        if wanted:
            outcomes = await asyncio.gather(*(self._spawn_warm() for _ in range(wanted)), return_exceptions=True)
            self.warm_idle += sum(1 for ok in outcomes if ok is True)
        fabric_metrics.agents_warm().set(self.warm_idle)

    async def _spawn_warm(self) -> bool:
        try:
            info = await self.spawn({"kind": WARM_KIND, "metadata": {"warm_pool": True}})
            await asyncio.wait_for(self.live[info.agent_id].handle.warm_up.remote(), timeout=START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - at the cap (a spawn raced it), Docker down, ...
            log.warning("fleet: warm pool spawn failed: %s", exc)
            fabric_metrics.warm_pool_spawns().inc(tags={"outcome": "failed"})
            return False
        fabric_metrics.warm_pool_spawns().inc(tags={"outcome": "ok"})
        return True

    def _agent(self, agent_id: str) -> _Agent:
        agent = self.live.get(agent_id)
        if agent is None:
            raise UnknownAgentError(f"no live agent {agent_id!r} in the fleet")
        return agent

    async def _drop_dead(self) -> None:
        """Free the slots of agents whose actor died without anyone telling us (at the cap only)."""
        agents = list(self.live.values())
        pings = [asyncio.wait_for(a.handle.ping.remote(), timeout=5) for a in agents]
        for agent, outcome in zip(agents, await asyncio.gather(*pings, return_exceptions=True), strict=True):
            if isinstance(outcome, ray.exceptions.ActorDiedError):
                await self._ended(agent.agent_id, "found dead")

    async def _ended(self, agent_id: str, reason: str) -> None:
        self.live.pop(agent_id, None)
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE qr_fleet_agents SET alive = false, ended_at = now(), end_reason = %s "
                               "WHERE agent_id = %s AND alive", (reason, agent_id))
        self._gauge()

    def _gauge(self) -> None:
        fabric_metrics.agents_alive().set(len(self.live), tags={"source": "fleet"})


async def _agent_actor_class() -> Any:
    """``actors.agent.AgentActor``, imported on the first spawn and not with this module: its
    import chain reaches LangGraph and the graphs (~1 s of CPU), which the fleet's start, on the
    path to a deploy's ready, does not need. In a thread, so the fleet's loop keeps answering.
    One import for every caller: concurrent first spawns awaited a module still being imported
    (it is in ``sys.modules`` from its first line) and 49 of 50 failed with a partially
    initialized ``actors.agent`` (bench/watchers.py, 2026-12-04)."""
    global _agent_import
    if _agent_import is None or (_agent_import.done() and _agent_import.exception() is not None):
        _agent_import = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "actors.agent"))
    module = await asyncio.shield(_agent_import)
    return module.AgentActor


_agent_import: asyncio.Future | None = None
