"""Token and cost budgets in the built-in graphs, with the scripted model over both wire
protocols (so each protocol's token usage is what is counted)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from quadracode_ray.config import ModelPrice
from quadracode_ray.graphs import build_agent_graph, build_orchestrator_graph
from quadracode_ray.graphs.budgets import Budget, add_spent, budget_reason, price_of
from quadracode_ray.llm.base import TokenUsage
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace
from tests.graphs.conftest import user

PRICES = {"scripted:budgeted": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}
BUDGET_TOKENS = 1500


def _calls(values: dict) -> list[dict]:
    return [m.usage_metadata for m in values["messages"] if getattr(m, "usage_metadata", None)]


def _cost(usage: dict) -> float:
    return (usage["input_tokens"] * 3.0 + usage["output_tokens"] * 15.0) / 1_000_000


def _halted_at_the_call_that_reached(budget: int, totals: list[int]) -> bool:
    """The last call made is the first whose running total reached the budget."""
    return sum(totals[:-1]) < budget <= sum(totals)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_thread_budget_stops_the_thread_at_the_call_that_reached_it(make_settings, graph_llm_server,
                                                                            thread, protocol):
    from quadracode_ray.llm import make_chat_model

    settings = make_settings(scripted_server_url=graph_llm_server.url, scripted_wire_protocol=protocol,
                             budget_thread_tokens=BUDGET_TOKENS, model_prices=PRICES, autonomy_max_iterations=1000)
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_chat_model("scripted:budgeted", settings), workspace=FakeWorkspace(),
                                     fleet=fleet, delegation=FakeDelegation(fleet), checkpointer=InMemorySaver(),
                                     settings=settings)
    out = await graph.ainvoke(user("keep running `echo tick`"), thread)

    calls = _calls(out)
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls), f"{protocol} reports no usage"
    totals = [c["total_tokens"] for c in calls]
    assert len(calls) >= 2 and _halted_at_the_call_that_reached(BUDGET_TOKENS, totals), totals
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "budget" and pending.value["options"] == ["continue", "stop"]
    spent = pending.value["spent"]
    assert spent["total_tokens"] == sum(totals) and spent["model_calls"] == len(calls)
    assert spent["input_tokens"] == sum(c["input_tokens"] for c in calls)
    assert spent["cost_usd"] == pytest.approx(sum(_cost(c) for c in calls))
    assert f"{sum(totals)} of {BUDGET_TOKENS} tokens" in pending.value["reason"]

    # "continue" grants the same budget again, counted from what is spent now.
    out = await graph.ainvoke(Command(resume="continue"), thread)
    more = [c["total_tokens"] for c in _calls(out)][len(calls):]
    assert out["__interrupt__"][0].value["type"] == "budget"
    assert _halted_at_the_call_that_reached(BUDGET_TOKENS, more), more
    assert out["spent"]["total_tokens"] == sum(totals) + sum(more)
    out = await graph.ainvoke(Command(resume="stop"), thread)
    assert out["stopped"] is True and out["messages"][-1].content.startswith("Stopped (budget")


async def test_a_cost_budget_and_a_tasks_spend_counted_in_its_thread(make_settings, graph_llm_server, thread):
    from quadracode_ray.llm import make_chat_model

    settings = make_settings(scripted_server_url=graph_llm_server.url, budget_thread_cost_usd=0.002,
                             model_prices=PRICES)
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_chat_model("scripted:budgeted", settings), workspace=FakeWorkspace(),
                                     fleet=fleet, delegation=FakeDelegation(fleet), checkpointer=InMemorySaver(),
                                     settings=settings)
    out = await graph.ainvoke(user("remember the code name KITE"), thread)
    assert "__interrupt__" not in out and out["spent"]["model_calls"] == 1
    # A task's result brings what the task spent: 0.0025 $ puts the thread over its 0.002 $.
    task_spend = {"input_tokens": 500, "output_tokens": 50, "total_tokens": 550, "cost_usd": 0.0025,
                  "model_calls": 2}
    out = await graph.ainvoke({"task_results": [{"task_id": "t1", "agent_id": "a1", "status": "succeeded",
                                                 "output": "42", "usage": task_spend}]}, thread)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "budget" and "cost budget" in pending.value["reason"]
    assert pending.value["spent"]["model_calls"] == 3 and pending.value["spent"]["total_tokens"] > 550


async def test_a_task_budget_applies_to_a_delegated_tasks_agent(make_settings, graph_llm_server, thread):
    from quadracode_ray.llm import make_chat_model

    settings = make_settings(scripted_server_url=graph_llm_server.url, budget_task_tokens=1, model_prices=PRICES,
                             budget_thread_tokens=10**9)
    graph = build_agent_graph(model=make_chat_model("scripted:budgeted", settings), workspace=FakeWorkspace(),
                              checkpointer=InMemorySaver(), settings=settings)
    task_run = {"configurable": {**thread["configurable"], "task_id": "t-9"}}  # as actors.brains runs a task
    out = await graph.ainvoke({"task": "write a.txt with content hi", "task_id": "t-9"}, task_run)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "budget" and "this task's token budget" in pending.value["reason"]
    assert out["spent"]["model_calls"] == 1  # one call, then the budget of 1 token was reached
    # The same graph on a thread of its own (not a delegated task) has the thread's budget.
    out = await graph.ainvoke({"task": "write a.txt with content hi"}, {"configurable": {"thread_id": "own"}})
    assert "__interrupt__" not in out and out["result"]["status"] == "succeeded"


def test_budget_arithmetic_and_prices():
    prices = {"scripted:a": ModelPrice(input_per_mtok=1, output_per_mtok=2), "b": ModelPrice(input_per_mtok=4,
                                                                                              output_per_mtok=8)}
    assert price_of(prices, "scripted:a").input_per_mtok == 1
    assert price_of(prices, "openai:b").output_per_mtok == 8  # the model's name alone matches any provider
    assert price_of(prices, "openai:c") is None
    spent = add_spent({"total_tokens": 10, "cost_usd": 0.5}, {"total_tokens": 5, "model_calls": 1})
    assert spent == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 15, "cost_usd": 0.5, "model_calls": 1}
    assert budget_reason(spent, None, Budget()) is None
    assert budget_reason(spent, None, Budget(max_tokens=16)) is None
    assert "15 of 15 tokens" in budget_reason(spent, None, Budget(max_tokens=15))
    assert budget_reason(spent, {"total_tokens": 10}, Budget(max_tokens=15)) is None  # granted again at 10
    assert "cost budget" in budget_reason(spent, None, Budget(max_cost_usd=0.5))
    assert TokenUsage(input_tokens=2, output_tokens=3).total_tokens == 5


def test_the_operators_budgets_replace_the_graphs_own_and_none_leaves_them():
    from quadracode_ray.graphs.budgets import Budgets, budget_in_force
    from quadracode_ray.graphs.control import BudgetLimits
    from quadracode_ray.persistence.guardrails import GuardrailValues

    own = Budgets(thread=Budget(scope="thread", max_tokens=100), task=Budget(scope="task", max_cost_usd=1.0))
    assert budget_in_force(own, None, "thread") == own.thread and budget_in_force(own, None, "task") == own.task
    operator = BudgetLimits(thread_tokens=None, thread_cost_usd=0.5, task_tokens=7)
    assert budget_in_force(own, operator, "thread") == Budget(scope="thread", max_cost_usd=0.5)  # tokens: no limit
    assert budget_in_force(own, operator, "task") == Budget(scope="task", max_tokens=7)
    values = GuardrailValues(max_iterations=3, max_hours=1, max_agents_per_thread=0, budget_task_tokens=7,
                             budget_thread_cost_usd=0.5)
    assert values.guardrails().budgets == operator
    assert values.guardrails(with_budgets=False).budgets is None


async def test_a_graph_halts_at_the_budget_its_guardrail_source_gives_at_each_check(make_model, thread):
    from quadracode_ray.graphs.budgets import Budgets
    from quadracode_ray.graphs.control import BudgetLimits, Guardrails

    class Operator:  # a GuardrailSource whose budgets change while the thread runs
        budgets: BudgetLimits | None = None

        async def current(self) -> Guardrails:
            return Guardrails(max_iterations=1000, budgets=self.budgets)

    operator = Operator()
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_model(), workspace=FakeWorkspace(), fleet=fleet,
                                     delegation=FakeDelegation(fleet), checkpointer=InMemorySaver(),
                                     guardrails=operator, budgets=Budgets(thread=Budget(max_tokens=10**9)))
    operator.budgets = BudgetLimits(thread_tokens=1)
    out = await graph.ainvoke(user("keep running `echo tick`"), thread)
    (pending,) = out["__interrupt__"]
    assert pending.value["type"] == "budget" and "of 1 tokens" in pending.value["reason"]
    assert out["spent"]["model_calls"] == 1
