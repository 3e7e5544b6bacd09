"""Token and cost budgets: what a thread (or a delegated task) spent, and when it must ask.

Every model call adds its usage to the state's ``spent`` (tokens, and money from the price
table in ``settings.model_prices``); a delegated task's spend is added to its thread's when
its result is folded in. A graph checks its budget before each model call: once the tokens
or the cost spent since the last grant reach the budget, the thread halts with an interrupt
``{"type": "budget", "reason": ..., "spent": {...}, "options": ["continue", "stop"]}``, as the
other guardrails do; "continue" grants the same budget again from what is spent now.

``spent`` is per thread and never reset, so it is also what the thread's metadata
(``usage``) and the ``thread_tokens_total`` / ``thread_cost_usd_total`` metrics show.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray import metrics
from quadracode_ray.config import ModelPrice, Settings
from quadracode_ray.graphs.control import BudgetLimits
from quadracode_ray.llm.base import TokenUsage

SPENT_KEYS = ("input_tokens", "output_tokens", "total_tokens", "cost_usd", "model_calls")


class Budget(BaseModel):
    """The most a thread (or a task) may spend before it stops and asks; None is no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scope: str = Field(default="thread", description="'thread' or 'task', named in the halt's reason.")
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)

    @property
    def unlimited(self) -> bool:
        return self.max_tokens is None and self.max_cost_usd is None

    @classmethod
    def for_threads(cls, settings: Settings) -> Budget:
        return cls(scope="thread", max_tokens=settings.budget_thread_tokens,
                   max_cost_usd=settings.budget_thread_cost_usd)

    @classmethod
    def for_tasks(cls, settings: Settings) -> Budget:
        return cls(scope="task", max_tokens=settings.budget_task_tokens, max_cost_usd=settings.budget_task_cost_usd)


class Budgets(BaseModel):
    """What a graph checks: the thread's budget, a delegated task's, and the price table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    thread: Budget = Budget(scope="thread")
    task: Budget = Budget(scope="task")
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Budgets:
        return cls(thread=Budget.for_threads(settings), task=Budget.for_tasks(settings), prices=settings.model_prices)


def budget_in_force(budgets: Budgets, operator: BudgetLimits | None, scope: str) -> Budget:
    """The ``scope`` ('thread' or 'task') budget to check: the operator's when set through
    ``/system/guardrails`` (read live, with the guardrails), else the graph's."""
    if operator is None:
        return budgets.task if scope == "task" else budgets.thread
    return Budget(scope=scope, max_tokens=getattr(operator, f"{scope}_tokens"),
                  max_cost_usd=getattr(operator, f"{scope}_cost_usd"))


def injected_budgets(configurable: dict[str, Any]) -> Budgets | None:
    """The Budgets a host put in a run's configurable (``actors.fabric_clients``); a caller's JSON
    under that key is no Budgets and is ignored (the settings' apply)."""
    given = configurable.get("budgets")
    return given if isinstance(given, Budgets) else None


def empty_spent() -> dict[str, Any]:
    return {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost_usd": 0.0, "model_calls": 0}


def price_of(prices: dict[str, ModelPrice], spec: str) -> ModelPrice | None:
    """The price of ``provider:model``, else of ``model`` alone, else None (cost counted as 0)."""
    return prices.get(spec) or prices.get(spec.partition(":")[2])


def cost_of(usage: TokenUsage, price: ModelPrice | None) -> float:
    if price is None:
        return 0.0
    return (usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok) / 1_000_000


def add_spent(spent: dict[str, Any] | None, more: dict[str, Any] | None) -> dict[str, Any]:
    """``spent`` plus ``more`` (both shaped as ``empty_spent()``; missing keys count as 0)."""
    out = empty_spent()
    for part in (spent or {}, more or {}):
        for key in SPENT_KEYS:
            out[key] += part.get(key) or 0
    out["cost_usd"] = round(out["cost_usd"], 9)
    return out


def spent_of_call(usage: TokenUsage, price: ModelPrice | None) -> dict[str, Any]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens, "cost_usd": cost_of(usage, price), "model_calls": 1}


def budget_reason(spent: dict[str, Any] | None, since: dict[str, Any] | None, budget: Budget) -> str | None:
    """Why the next model call must wait for the human, or None while within ``budget``.
    ``since`` is what was spent when the budget was last granted (None: the thread's start)."""
    if budget.unlimited:
        return None
    spent = add_spent(spent, None)
    since = add_spent(since, None)
    tokens = spent["total_tokens"] - since["total_tokens"]
    cost = spent["cost_usd"] - since["cost_usd"]
    summary = f"spent {spent['total_tokens']} tokens (${spent['cost_usd']:.6f}) in {spent['model_calls']} model calls"
    if budget.max_tokens is not None and tokens >= budget.max_tokens:
        return f"reached this {budget.scope}'s token budget: {tokens} of {budget.max_tokens} tokens; {summary}"
    if budget.max_cost_usd is not None and cost >= budget.max_cost_usd:
        return f"reached this {budget.scope}'s cost budget: ${cost:.6f} of ${budget.max_cost_usd:.6f}; {summary}"
    return None


def record_thread_spend(thread_id: str, call: dict[str, Any]) -> None:
    """Count one model call's spend under its thread, for ``/metrics``."""
    if not thread_id:
        return
    tokens = metrics.counter("thread_tokens_total", "LLM tokens spent per thread, by direction (input/output).",
                             ("thread_id", "direction"))
    tokens.inc(call["input_tokens"], {"thread_id": thread_id, "direction": "input"})
    tokens.inc(call["output_tokens"], {"thread_id": thread_id, "direction": "output"})
    if call["cost_usd"]:
        metrics.counter("thread_cost_usd_total", "LLM cost spent per thread in US dollars (settings.model_prices).",
                        ("thread_id",)).inc(call["cost_usd"], {"thread_id": thread_id})
