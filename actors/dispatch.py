"""Giving delegated tasks to agents: choose (or spawn) one, send the task, reassign when it dies."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from actors import fabric_metrics
from actors.common import FLEET, ORCHESTRATOR, REGISTRY, HandleCache, spawn_background
from actors.delivery import RecipientGone, send
from actors.fleet import FleetCapacityError
from actors.tasks import TaskStore
from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.envelope import CANCEL_TASK, TASK, TASK_RESULT, Envelope
from quadracode_ray.interfaces.fleet import AgentInfo, TaskInfo, TaskResult
from runs.execution import TRACE_METADATA_KEY

log = logging.getLogger(__name__)
MAX_REMEMBERED_LOST = 10_000


def _task_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """What the task carries to its agent: its row's metadata (the assistant config, the trace of
    the run that delegated it); for a task recorded without a trace, the current one."""
    metadata = dict(row.get("metadata") or {})
    if TRACE_METADATA_KEY not in metadata and (carrier := tracing.carrier()):
        metadata[TRACE_METADATA_KEY] = carrier
    return metadata


class Dispatcher:
    def __init__(self, settings: Settings, store: TaskStore, handles: HandleCache,
                 fail_task: Callable[[Envelope], Awaitable[Any]]):
        self.settings = settings
        self.store = store
        self.handles = handles
        self.fail_task = fail_task
        """Hands a synthetic failed ``task_result`` envelope to the orchestrator's own inbox."""
        self.load: dict[str, int] = {}
        self.lost: OrderedDict[str, None] = OrderedDict()
        """Agents known to be gone (bounded: the oldest are forgotten)."""
        self._tasks: set[asyncio.Task] = set()
        self._active: set[str] = set()
        self._missing: set[str] = set()

    def schedule(self, task_id: str) -> None:
        if task_id not in self._active:
            self._active.add(task_id)
            spawn_background(self._tasks, self._dispatch(task_id), name=f"dispatch:{task_id}")

    async def _dispatch(self, task_id: str) -> None:
        try:
            await self._dispatch_until_sent(task_id)
        finally:
            self._active.discard(task_id)

    async def _dispatch_until_sent(self, task_id: str) -> None:
        while True:
            row = await self.store.row(task_id)
            if row["status"] != "pending":
                return
            if row["attempts"] >= self.settings.task_max_attempts:
                await self._fail(row, f"gave up after {row['attempts']} agents were lost")
                return
            try:
                agent_id = await self._choose_agent(row)
            except FleetCapacityError as exc:
                await self._fail(row, f"no agent available: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - a task must end in a result, never vanish
                log.exception("dispatch of %s failed", task_id)
                await self._fail(row, f"could not start an agent: {type(exc).__name__}: {exc}")
                return
            envelope = Envelope(
                id=f"task:{task_id}:{row['attempts'] + 1}", sender=ORCHESTRATOR, recipient=agent_id, kind=TASK,
                thread_id=row["parent_thread_id"],
                payload={"task_id": task_id, "instruction": row["instruction"],
                         "parent_thread_id": row["parent_thread_id"], "attempt": row["attempts"] + 1,
                         "metadata": _task_metadata(row)})
            if not await self.store.assign(task_id, agent_id, envelope.id):
                return  # cancelled meanwhile
            self.load[agent_id] = self.load.get(agent_id, 0) + 1
            try:
                await send(self.handles, envelope, restartable=False, deadline_s=30)
                return
            except (RecipientGone, TimeoutError) as exc:
                log.warning("task %s: agent %s unreachable (%s); choosing another", task_id, agent_id, exc)
                self._mark_lost(agent_id)
                self.release(agent_id)
                await self.store.requeue(task_id, only_agent=agent_id)

    async def _choose_agent(self, row: dict[str, Any]) -> str:
        requested = row["requested_agent_id"]
        if requested and requested not in self.lost:
            return requested
        registry = self.handles.get(REGISTRY)
        candidates: list[AgentInfo] = [a for a in await registry.list.remote(capability=row["capability"])
                                       if a.agent_id not in self.lost]
        idle = [a for a in candidates if self.load.get(a.agent_id, 0) == 0]
        if idle:
            return idle[0].agent_id
        try:
            spawned = await self.handles.get(FLEET).spawn.remote(
                {"kind": "coder", "capabilities": [row["capability"]] if row["capability"] else []})
            return spawned.agent_id
        except FleetCapacityError:
            if not candidates:
                raise
            return min(candidates, key=lambda a: self.load.get(a.agent_id, 0)).agent_id

    async def _fail(self, row: dict[str, Any], error: str) -> None:
        fabric_metrics.tasks().inc(tags={"outcome": "failed"})
        result = TaskResult(task_id=row["task_id"], agent_id=row["agent_id"], status="failed", error=error)
        await self.fail_task(Envelope(
            id=f"task:{row['task_id']}:failed", sender=ORCHESTRATOR, recipient=ORCHESTRATOR, kind=TASK_RESULT,
            thread_id=row["parent_thread_id"], payload=result.model_dump(mode="json")))

    def _mark_lost(self, agent_id: str) -> None:
        self.lost[agent_id] = None
        while len(self.lost) > MAX_REMEMBERED_LOST:
            self.lost.popitem(last=False)

    def release(self, agent_id: str | None) -> None:
        if agent_id and self.load.get(agent_id, 0) > 0:
            self.load[agent_id] -= 1

    async def agent_lost(self, agent_id: str) -> list[str]:
        """Reassign every task running on a lost agent; returns their ids."""
        self._mark_lost(agent_id)
        self.load.pop(agent_id, None)
        self.handles.forget(agent_id)
        moved = []
        for row in await self.store.running_on(agent_id):
            if await self.store.requeue(row["task_id"], only_agent=agent_id):
                moved.append(row["task_id"])
                self.schedule(row["task_id"])
        return moved

    async def check_orphans(self) -> list[str]:
        """Reassign tasks whose agent the registry has not known for two checks in a row.

        The registry tells us about agents it reaps; this catches the rest: an agent that died
        while the registry itself was restarting never re-registers, so it is never reaped."""
        registry = self.handles.get(REGISTRY)
        known = {a.agent_id for a in await registry.list.remote(include_unhealthy=True)}
        running = {row["agent_id"] for row in await self.store.open_tasks() if row["status"] == "running"}
        missing = {agent_id for agent_id in running if agent_id and agent_id not in known}
        confirmed = missing & self._missing
        self._missing = missing - confirmed
        moved: list[str] = []
        for agent_id in confirmed:
            log.warning("task watchdog: agent %s is unknown to the registry; reassigning its tasks", agent_id)
            moved += await self.agent_lost(agent_id)
        return moved

    async def resume(self) -> None:
        """After a restart: dispatch pending tasks; reassign running ones whose agent is gone."""
        registry = self.handles.get(REGISTRY)
        known = {a.agent_id for a in await registry.list.remote(include_unhealthy=True)}
        for row in await self.store.open_tasks():
            if row["status"] == "pending":
                self.schedule(row["task_id"])
            elif row["agent_id"] not in known:
                await self.agent_lost(row["agent_id"])
            else:
                self.load[row["agent_id"]] = self.load.get(row["agent_id"], 0) + 1

    async def cancel_on_agent(self, info: TaskInfo, agent_id: str) -> None:
        envelope = Envelope(id=f"cancel:{info.task_id}", sender=ORCHESTRATOR, recipient=agent_id, kind=CANCEL_TASK,
                            thread_id=info.parent_thread_id, payload={"task_id": info.task_id})
        try:
            await send(self.handles, envelope, restartable=False, deadline_s=10)
        except (RecipientGone, TimeoutError) as exc:
            log.info("cancel of %s: agent %s unreachable (%s)", info.task_id, agent_id, exc)
