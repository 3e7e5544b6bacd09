"""A token budget stops a thread at the right model call, over the HTTP API with the official
langgraph-sdk: the whole fabric (the orchestrator actor, the scripted model, the real `default`
sandbox) with the Serve app beside it. What the thread spent is in its metadata and on /metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import undeploy
from tests.e2e.conftest import eventually, message_texts

APP = "qr-budgets"
BUDGET_TOKENS = 1500
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
E2E_SETTINGS = {"budget_thread_tokens": BUDGET_TOKENS, "model_prices": {"scripted:default": PRICE},
                "autonomy_max_iterations": 1000, "autonomy_max_agents_per_thread": 0}


@pytest.fixture(scope="module")
def api(system, serve_http_port: int) -> Iterator[str]:
    from ray import serve

    from serve_app.app import build_app

    overrides = system.settings.model_dump(mode="json", exclude_unset=True)
    serve.run(build_app({"settings": overrides, "fabric": False}), name=APP, route_prefix=f"/{APP}", blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{APP}"
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}
    yield url
    undeploy(APP, system.settings.database_url)


def _model_calls(values: dict) -> list[dict]:
    return [m["usage_metadata"] for m in values["messages"] if m.get("type") == "ai" and m.get("usage_metadata")]


def _cost(usage: dict) -> float:
    return (usage["input_tokens"] * PRICE["input_per_mtok"] + usage["output_tokens"] * PRICE["output_per_mtok"]) / 1e6


async def test_a_token_budget_stops_the_thread_at_the_call_that_reached_it(system, api):
    from langgraph_sdk import get_client

    client = get_client(url=api, timeout=120)
    thread_id = (await client.threads.create())["thread_id"]
    ticks = f"budget-{thread_id}.ticks"
    await client.runs.wait(thread_id, "orchestrator",
                           input={"messages": [{"role": "user", "content": f"keep running `echo tick >> {ticks}`"}]})

    state = await client.threads.get_state(thread_id)
    calls = _model_calls(state["values"])
    totals = [c["total_tokens"] for c in calls]
    # The call that brought the total to the budget was the last one made; the next waits.
    assert len(calls) >= 2 and sum(totals[:-1]) < BUDGET_TOKENS <= sum(totals), totals
    assert len(message_texts(state["values"], type_="tool", name="exec")) == len(calls)
    (interrupt,) = state["interrupts"]
    assert interrupt["value"]["type"] == "budget" and interrupt["value"]["options"] == ["continue", "stop"]
    spent = interrupt["value"]["spent"]
    assert spent["total_tokens"] == sum(totals) and spent["model_calls"] == len(calls)
    assert spent["cost_usd"] == pytest.approx(sum(_cost(c) for c in calls))
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "interrupted"
    assert thread["metadata"]["usage"] == spent  # what it spent, for the panel and any client

    # /metrics: the thread's tokens and cost, counted by the orchestrator actor.
    async def counted():
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(f"{api}/metrics")).text
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("thread_id") == thread_id:
                    found[(sample.name, sample.labels.get("direction"))] = sample.value
        return found

    # Ray exports each counter on its own schedule: a scrape may hold some of the model calls'
    # increments and not yet the others (683 of 1441 input tokens in a fresh-clone CI run), so the
    # spend is awaited whole, and what was last seen is what a failure shows.
    last: dict = {}

    async def counted_whole():
        last.clear()
        last.update(await counted())
        return last if (last.get(("ray_quadracode_thread_tokens_total", "input")) == spent["input_tokens"]
                        and last.get(("ray_quadracode_thread_tokens_total", "output")) == spent["output_tokens"]
                        and last.get(("ray_quadracode_thread_cost_usd_total", None)) == pytest.approx(spent["cost_usd"])
                        ) else None

    try:
        await eventually(counted_whole, timeout=60, what="the thread's whole spend on /metrics")
    except AssertionError:
        pytest.fail(f"/metrics never showed the thread's spend {spent}: last seen {last}")

    # The human stops the turn: nothing more is spent.
    await client.runs.wait(thread_id, "orchestrator", command={"resume": "stop"})
    values = (await client.threads.get_state(thread_id))["values"]
    assert values["stopped"] is True and message_texts(values, type_="ai")[-1].startswith("Stopped (budget")
    assert (await client.threads.get(thread_id))["metadata"]["usage"] == spent
