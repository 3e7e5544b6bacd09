"""Delegated tasks: their durable rows (``qr_tasks``) and the DelegationClient graphs are given."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from quadracode_ray import tracing
from quadracode_ray.graphs.assistant_config import read_assistant_config
from quadracode_ray.interfaces.fleet import FleetError, TaskInfo, TaskResult
from runs.execution import TRACE_METADATA_KEY
from runs.threads import thread_id_of

OPEN = ("pending", "running")
ASSISTANT_CONFIG_KEY = "assistant_config"
"""In a task's metadata: the delegating assistant's config for the agent's graph."""


class UnknownTaskError(FleetError, LookupError):
    """No task with that id exists."""


def _info(row: dict[str, Any]) -> TaskInfo:
    return TaskInfo(task_id=row["task_id"], agent_id=row["agent_id"], parent_thread_id=row["parent_thread_id"],
                    instruction=row["instruction"], status=row["status"], created_at=row["created_at"])


class TaskStore:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def _one(self, sql: str, params: tuple) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute(sql, params)).fetchone()

    async def create(self, *, instruction: str, parent_thread_id: str, capability: str | None,
                     requested_agent_id: str | None, task_id: str | None = None,
                     metadata: dict[str, Any] | None = None) -> TaskInfo:
        """``metadata`` goes with the task to every agent it is given to (``TaskRequest.metadata``)."""
        row = await self._one(
            "INSERT INTO qr_tasks (task_id, parent_thread_id, instruction, capability, requested_agent_id, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
            (task_id or uuid.uuid4().hex, parent_thread_id, instruction, capability, requested_agent_id,
             json.dumps(metadata or {})))
        return _info(row)

    async def row(self, task_id: str) -> dict[str, Any]:
        row = await self._one("SELECT * FROM qr_tasks WHERE task_id = %s", (task_id,))
        if row is None:
            raise UnknownTaskError(f"no task {task_id!r}")
        return row

    async def get(self, task_id: str) -> TaskInfo:
        return _info(await self.row(task_id))

    async def assign(self, task_id: str, agent_id: str, envelope_id: str) -> bool:
        """pending -> running on ``agent_id``; False when the task is no longer pending."""
        row = await self._one(
            "UPDATE qr_tasks SET status = 'running', agent_id = %s, envelope_id = %s, attempts = attempts + 1, "
            "updated_at = now() WHERE task_id = %s AND status = 'pending' RETURNING task_id",
            (agent_id, envelope_id, task_id))
        return row is not None

    async def requeue(self, task_id: str, *, only_agent: str | None = None) -> bool:
        """running -> pending (its agent was lost); False when it had finished meanwhile."""
        row = await self._one(
            "UPDATE qr_tasks SET status = 'pending', agent_id = NULL, updated_at = now() "
            "WHERE task_id = %s AND status = 'running' AND (%s::text IS NULL OR agent_id = %s) RETURNING task_id",
            (task_id, only_agent, only_agent))
        return row is not None

    async def finish(self, result: TaskResult, envelope_id: str) -> bool:
        """Record the outcome once: True for the envelope that closed the task (also on its retries)."""
        payload = {**result.model_dump(mode="json"), "envelope_id": envelope_id}
        row = await self._one(
            "UPDATE qr_tasks SET status = %s, result = %s, updated_at = now() "
            "WHERE task_id = %s AND (status IN ('pending', 'running') OR result->>'envelope_id' = %s) "
            "RETURNING task_id",
            (result.status if result.status not in OPEN else "failed", json.dumps(payload), result.task_id,
             envelope_id))
        return row is not None

    async def cancel(self, task_id: str) -> tuple[TaskInfo, str | None]:
        """Cancel an open task; returns its info and the agent that was running it (to be told)."""
        async with self.pool.connection() as conn:
            before = await (await conn.execute(
                "SELECT agent_id, status FROM qr_tasks WHERE task_id = %s FOR UPDATE", (task_id,))).fetchone()
            if before is None:
                raise UnknownTaskError(f"no task {task_id!r}")
            row = await (await conn.execute(
                "UPDATE qr_tasks SET status = 'cancelled', updated_at = now() "
                "WHERE task_id = %s AND status IN ('pending', 'running') RETURNING *", (task_id,))).fetchone()
        if row is None:
            return await self.get(task_id), None
        return _info(row), before["agent_id"] if before["status"] == "running" else None

    async def open_tasks(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(
                "SELECT * FROM qr_tasks WHERE status IN ('pending', 'running') ORDER BY created_at")).fetchall()

    async def running_on(self, agent_id: str) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(
                "SELECT * FROM qr_tasks WHERE status = 'running' AND agent_id = %s", (agent_id,))).fetchall()

    async def of_thread(self, thread_id: str, limit: int = 100) -> list[TaskInfo]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT * FROM qr_tasks WHERE parent_thread_id = %s ORDER BY created_at LIMIT %s",
                (thread_id, limit))).fetchall()
        return [_info(row) for row in rows]


class FabricDelegation:
    """The DelegationClient the orchestrator graph gets: never blocks on an agent.

    ``delegate`` records the task and returns at once; choosing or spawning an agent and
    sending it the task happen in the background (``schedule``), and the agent's result
    resumes the parent thread later as graph input ``{"task_results": [...]}``.
    """

    def __init__(self, store: TaskStore, schedule: Callable[[str], None],
                 cancel_on_agent: Callable[[TaskInfo, str], Any]):
        self.store = store
        self._schedule = schedule
        self._cancel_on_agent = cancel_on_agent

    async def delegate(self, instruction: str, *, parent_thread_id: str, agent_id: str | None = None,
                       capability: str | None = None, config: dict[str, Any] | None = None) -> TaskInfo:
        """Record the task with what it carries: ``config`` (the assistant config its agent builds
        its graph with, checked here: a bad one is refused, not found by the agent) and the
        current trace (the delegating run's), so every attempt continues that trace."""
        if not instruction or not instruction.strip():
            raise ValueError("a delegated task needs a non-empty instruction")
        if not parent_thread_id:
            raise ValueError("a delegated task needs the parent_thread_id its result goes back to")
        parent_thread_id = thread_id_of(parent_thread_id)
        metadata: dict[str, Any] = {}
        if config:
            read_assistant_config(config)  # AssistantConfigError (a ValueError) names the bad key
            metadata[ASSISTANT_CONFIG_KEY] = config
        if carrier := tracing.carrier():
            metadata[TRACE_METADATA_KEY] = carrier
        info = await self.store.create(instruction=instruction, parent_thread_id=parent_thread_id,
                                       capability=capability, requested_agent_id=agent_id, metadata=metadata)
        self._schedule(info.task_id)
        return info

    async def task_status(self, task_id: str) -> TaskInfo:
        return await self.store.get(task_id)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        info, running_on = await self.store.cancel(task_id)
        if running_on is not None:
            await self._cancel_on_agent(info, running_on)
        return info
