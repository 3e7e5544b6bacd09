"""Control over HTTP: the emergency stop of one thread or of everything, the system's status,
and the autonomy guardrails (persisted; new runs use them without a restart)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.common import ORCHESTRATOR, actor_name
from quadracode_ray.persistence.guardrails import (
    BUDGET_FIELDS,
    GuardrailValues,
    StoredGuardrails,
    read_guardrails,
    write_guardrails,
)
from serve_app.errors import Invalid, NotFound
from serve_app.operator.access import AdminDep, CallerDep, context
from serve_app.operator.fabric import api_error, operator_fabric, translated
from serve_app.operator.status import SystemStatus, system_status
from serve_app.records import threads as thread_records
from serve_app.runs.service import cancel_run

router = APIRouter(tags=["Control"])


class ThreadStopped(BaseModel):
    thread_id: str
    stopped: bool
    running_runs: list[str] = Field(description="Runs of the thread that were running. Those of the orchestrator "
                                                "halt with an emergency_stop interrupt (resume with 'continue' or "
                                                "'stop'); those of other graphs are cancelled (status interrupted).")
    cancelled_runs: list[str] = Field(default_factory=list,
                                      description="The running runs of other hosts (agents, run executors) that "
                                                  "were cancelled.")


class SystemStopBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kill_agents: bool = Field(default=False, description="Also kill every agent of the fleet (hotpath ones too).")


class SystemStopped(BaseModel):
    threads_stopped: list[str]
    tasks_cancelled: list[str]
    agents_killed: list[str]
    errors: list[str] = Field(description="What could not be stopped, and why.")


class GuardrailPatch(BaseModel):
    """The fields to change; those left out keep their value. A budget set to null is no limit
    (null for the other fields changes nothing)."""

    model_config = ConfigDict(extra="forbid")
    max_iterations: int | None = Field(default=None, description="Model calls a thread may make without human input.")
    max_hours: float | None = Field(default=None, description="Hours a thread may run without human input.")
    max_agents_per_thread: int | None = Field(default=None, description="Agents a thread may spawn before it asks.")
    budget_thread_tokens: int | None = Field(default=None, ge=1, le=10**12, description=(
        "LLM tokens a thread may spend (its delegated tasks' included) before it stops and asks; null: no limit."))
    budget_thread_cost_usd: float | None = Field(default=None, gt=0, le=1e9, description=(
        "US dollars a thread may spend (priced by the settings' model_prices); null: no limit."))
    budget_task_tokens: int | None = Field(default=None, ge=1, le=10**12, description=(
        "LLM tokens one delegated task may spend before its agent stops and asks; null: no limit."))
    budget_task_cost_usd: float | None = Field(default=None, gt=0, le=1e9, description=(
        "US dollars one delegated task may spend before its agent stops and asks; null: no limit."))

    def changes(self) -> dict:
        return {name: value for name, value in self.model_dump(exclude_unset=True).items()
                if value is not None or name in BUDGET_FIELDS}


async def _running_runs(request: Request, thread_id: str) -> list[tuple[str, str | None]]:
    """(run id, host) of the thread's running runs."""
    pool = await context(request).pool()
    async with pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT run_id, executor FROM qr_runs WHERE thread_id = %s AND status = 'running' ORDER BY created_at",
            (thread_id,))).fetchall()
    return [(str(row["run_id"]), row["executor"]) for row in rows]


async def _cancel_other_hosts(request: Request, runs: list[tuple[str, str | None]]) -> list[str]:
    """Cancel the runs not hosted by the orchestrator actor: a user graph's run (or an agent's)
    has no emergency-stop check of its own, so stopping its thread cancels it."""
    app = context(request)
    orchestrator = actor_name(app.settings, ORCHESTRATOR)
    cancelled = []
    for run_id, host in runs:
        if host != orchestrator and await cancel_run(app, run_id, host, "interrupt"):
            cancelled.append(run_id)
    return cancelled


@router.post("/threads/{thread_id}/stop", response_model=ThreadStopped,
             summary="Emergency stop: the thread's current run halts at once and asks the human")
async def stop_thread(request: Request, thread_id: str, caller: CallerDep) -> ThreadStopped:
    api_thread: str | None
    try:
        api_thread = str(uuid.UUID(thread_id))
    except ValueError:
        api_thread = None
    if not caller.admin:
        # Others' threads, and the fabric's own threads (not API threads), are not theirs to stop.
        if api_thread is None or not await thread_records.exists(await context(request).pool(), api_thread,
                                                                 caller.owner):
            raise NotFound(f"thread {thread_id} not found")
    with translated():
        await operator_fabric(context(request)).client.stop_thread(api_thread or thread_id)
    running = await _running_runs(request, api_thread) if api_thread else []
    with translated():
        cancelled = await _cancel_other_hosts(request, running)
    return ThreadStopped(thread_id=api_thread or thread_id, stopped=True,
                         running_runs=[run_id for run_id, _ in running], cancelled_runs=cancelled)


async def _busy_threads_and_tasks(request: Request) -> tuple[list[str], list[str]]:
    """Threads with a run going on (API runs, and input the orchestrator accepted and has not
    finished) and the delegated tasks not yet finished."""
    pool = await context(request).pool()
    async with pool.connection() as conn:
        threads = {str(row["thread_id"]) for row in await (await conn.execute(
            "SELECT DISTINCT thread_id FROM qr_runs WHERE status = 'running'")).fetchall()}
        threads |= {row["thread_id"] for row in await (await conn.execute(
            "SELECT DISTINCT envelope->>'thread_id' AS thread_id FROM qr_deliveries "
            "WHERE recipient = %s AND status = 'pending' AND envelope->>'thread_id' IS NOT NULL",
            (ORCHESTRATOR,))).fetchall()}
        tasks = [row["task_id"] for row in await (await conn.execute(
            "SELECT task_id FROM qr_tasks WHERE status IN ('pending', 'running') ORDER BY created_at")).fetchall()]
    return sorted(threads), tasks


def _reason(what: str, exc: BaseException) -> str:
    error = api_error(exc)
    return f"{what}: {error.detail if error else f'{type(exc).__name__}: {exc}'}"


@router.post("/system/stop", response_model=SystemStopped,
             summary="Emergency stop of everything: every running thread, every agent's task, optionally the agents")
async def stop_everything(request: Request, _: AdminDep,
                          body: Annotated[SystemStopBody | None, Body()] = None) -> SystemStopped:
    body = body or SystemStopBody()
    fabric = operator_fabric(context(request))
    orchestrator = fabric.actor(ORCHESTRATOR)
    threads, tasks = await _busy_threads_and_tasks(request)
    errors: list[str] = []
    stopped: list[str] = []
    for thread_id, outcome in zip(threads, await asyncio.gather(
            *(orchestrator.stop_thread.remote(t) for t in threads), return_exceptions=True), strict=True):
        (errors.append(_reason(f"thread {thread_id}", outcome)) if isinstance(outcome, BaseException)
         else stopped.append(thread_id))
    cancelled: list[str] = []
    for task_id, outcome in zip(tasks, await asyncio.gather(
            *(orchestrator.cancel_task.remote(t) for t in tasks), return_exceptions=True), strict=True):
        (errors.append(_reason(f"task {task_id}", outcome)) if isinstance(outcome, BaseException)
         else cancelled.append(task_id))
    killed: list[str] = []
    if body.kill_agents:
        with translated():
            agents = [a.agent_id for a in await fabric.fleet.list_agents()]
        for agent_id, outcome in zip(agents, await asyncio.gather(
                *(fabric.fleet.kill_agent(a, force=True) for a in agents), return_exceptions=True), strict=True):
            (errors.append(_reason(f"agent {agent_id}", outcome)) if isinstance(outcome, BaseException)
             else killed.append(agent_id))
    return SystemStopped(threads_stopped=stopped, tasks_cancelled=cancelled, agents_killed=killed, errors=errors)


@router.get("/system/status", response_model=SystemStatus,
            summary="Ray nodes, the installation's actors (and whether each answers), Postgres, Docker, the model")
async def status(request: Request, _: AdminDep) -> SystemStatus:
    return await system_status(context(request))


@router.get("/system/guardrails", response_model=StoredGuardrails, summary="The autonomy guardrails in force")
async def get_guardrails(request: Request, _: AdminDep) -> StoredGuardrails:
    ctx = context(request)
    async with (await ctx.pool()).connection() as conn:
        return await read_guardrails(conn, ctx.settings)


@router.patch("/system/guardrails", response_model=StoredGuardrails,
              summary="Change the autonomy guardrails and token/cost budgets (persisted; runs use them from "
                      "their next check, no restart)")
async def patch_guardrails(request: Request, body: GuardrailPatch, caller: AdminDep) -> StoredGuardrails:
    ctx = context(request)
    async with (await ctx.pool()).connection() as conn:
        current = await read_guardrails(conn, ctx.settings)
        merged = {**current.model_dump(include=set(GuardrailValues.model_fields)), **body.changes()}
        try:
            values = GuardrailValues(**merged)
        except ValidationError as exc:
            raise Invalid("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        return await write_guardrails(conn, ctx.settings, values, caller.owner)
