"""Autonomous-mode guardrails and the emergency stop.

Guardrails bound how long a thread may act without a human: model iterations and wall-clock
time since the last human input, and agents spawned. When one trips, the thread halts with an
``interrupt`` asking the human (``{"type": "guardrail", "reason": ..., "options": [...]}``);
resuming with ``Command(resume="continue")`` grants a fresh budget, ``"stop"`` ends the turn,
any other text continues with that text as a new instruction.

The emergency stop is a ``StopSignal`` injected into the graph factories; the actor flips it
with ``StopRegistry.stop(thread_id)``. Graphs check it before every model call and tool, and
race in-flight model calls and tools against it, so a thread halts at once, also mid-run,
with an ``interrupt`` of type ``emergency_stop``. Resuming clears the signal.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.config import Settings

T = TypeVar("T")


class BudgetLimits(BaseModel):
    """Token and cost budgets an operator set (``PATCH /system/guardrails``); None is no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    thread_tokens: int | None = Field(default=None, ge=1)
    thread_cost_usd: float | None = Field(default=None, gt=0)
    task_tokens: int | None = Field(default=None, ge=1)
    task_cost_usd: float | None = Field(default=None, gt=0)


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_iterations: int = Field(default=50, ge=1, description="Model calls since the last human input.")
    max_wall_clock_s: float = Field(default=4 * 3600, gt=0, description="Seconds since the last human input.")
    max_agents_per_thread: int = Field(default=8, ge=0, description="Agents spawned before asking again.")
    budgets: BudgetLimits | None = Field(default=None, description="The operator's token/cost budgets, which "
                                         "replace the graph's own (``graphs.budgets``); None: the graph's apply.")


    @classmethod
    def from_settings(cls, settings: Settings) -> Guardrails:
        return cls(max_iterations=settings.autonomy_max_iterations,
                   max_wall_clock_s=settings.autonomy_max_hours * 3600,
                   max_agents_per_thread=settings.autonomy_max_agents_per_thread)


@runtime_checkable
class GuardrailSource(Protocol):
    """Guardrails that may change while graphs run (an operator's, persisted): read at each check."""

    async def current(self) -> Guardrails: ...


async def current_guardrails(guardrails: Guardrails | GuardrailSource) -> Guardrails:
    return guardrails if isinstance(guardrails, Guardrails) else await guardrails.current()


def guardrail_reason(state: dict[str, Any], guardrails: Guardrails, now: float) -> str | None:
    iterations = state.get("iterations") or 0
    if iterations >= guardrails.max_iterations:
        return f"reached {iterations} model iterations without human input (limit {guardrails.max_iterations})"
    started = state.get("autonomy_started_at")
    if started is not None and now - started > guardrails.max_wall_clock_s:
        return (f"ran {now - started:.0f}s without human input "
                f"(limit {guardrails.max_wall_clock_s:.0f}s)")
    return None


@runtime_checkable
class StopSignal(Protocol):
    """What graphs need from an emergency stop: a flag per thread they can poll and await."""

    def is_set(self, thread_id: str) -> bool: ...

    async def wait(self, thread_id: str) -> None: ...

    def clear(self, thread_id: str) -> None: ...


class StopRegistry:
    """An in-process StopSignal. ``stop`` may be called from any thread or event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped: set[str] = set()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}

    def stop(self, thread_id: str) -> None:
        with self._lock:
            self._stopped.add(thread_id)
            waiters = self._waiters.pop(thread_id, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))

    def is_set(self, thread_id: str) -> bool:
        with self._lock:
            return thread_id in self._stopped

    def clear(self, thread_id: str) -> None:
        with self._lock:
            self._stopped.discard(thread_id)

    async def wait(self, thread_id: str) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if thread_id in self._stopped:
                return
            self._waiters.setdefault(thread_id, []).append((loop, future))
        try:
            await future
        finally:
            with self._lock:
                entries = self._waiters.get(thread_id, [])
                if (loop, future) in entries:
                    entries.remove((loop, future))


class EmergencyStopped(Exception):
    """Internal: the stop signal won the race against a model call or a tool."""


async def race_stop(work: Awaitable[T], stop: StopSignal | None, thread_id: str) -> T:
    """Await ``work`` unless the stop signal fires first; then cancel it and raise EmergencyStopped."""
    if stop is None:
        return await work
    if stop.is_set(thread_id):
        if asyncio.iscoroutine(work):
            work.close()
        raise EmergencyStopped(thread_id)
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait(thread_id))
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        stopper.cancel()
        raise
    if task in done:
        stopper.cancel()
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    raise EmergencyStopped(thread_id)
