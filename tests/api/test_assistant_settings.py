"""Per-assistant prompts, models, context budgets and guardrails of the built-in graphs, through
the HTTP API with the official langgraph-sdk (the runs execute in the run executors)."""

from __future__ import annotations

import pytest
from langgraph_sdk.errors import UnprocessableEntityError

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.serve]

FALCON = "You are the review desk. The code name is Falcon."
HERON = "You are the review desk. The code name is Heron."


async def _answer(lg_client, assistant_id: str, text: str, thread_id: str | None = None) -> tuple[str, dict]:
    """The assistant's answer to ``text`` and the metadata of its streamed message."""
    thread_id = thread_id or (await lg_client.threads.create())["thread_id"]
    metadata: dict = {}
    async for part in lg_client.runs.stream(thread_id, assistant_id, input={"messages": [
            {"role": "user", "content": text}]}, stream_mode="messages-tuple"):
        if part.event == "messages":
            metadata = part.data[1]
    state = await lg_client.threads.get_state(thread_id)
    return state["values"]["messages"][-1]["content"], metadata


async def test_the_schemas_name_the_settings_an_assistant_may_set(lg_client) -> None:
    for graph_id in ("orchestrator", "agent"):
        schemas = await lg_client.assistants.get_schemas(graph_id)
        properties = schemas["config_schema"]["properties"]
        assert {"model", "system_prompt", "context_token_budget", "guardrails", "mcp_servers"} <= set(properties)
        assert "max_iterations" in schemas["config_schema"]["$defs"]["GuardrailLimits"]["properties"]


async def test_an_assistant_sets_its_prompt_and_model_and_versions_them(lg_client) -> None:
    assistant = await lg_client.assistants.create("orchestrator", config={"configurable": {
        "system_prompt": FALCON, "model": "scripted:reviewer"}})
    aid = assistant["assistant_id"]
    answer, metadata = await _answer(lg_client, aid, "What is the code name?")
    assert answer == "The code name is Falcon."
    assert metadata["ls_model_name"] == "reviewer"
    # The built-in assistant keeps the built-in prompt and the installation's model.
    answer, metadata = await _answer(lg_client, "orchestrator", "What is the code name?")
    assert answer == "I have not been told a code name."
    assert metadata["ls_model_name"] == "default"

    updated = await lg_client.assistants.update(aid, config={"configurable": {"system_prompt": HERON}})
    assert updated["version"] == 2
    answer, metadata = await _answer(lg_client, aid, "What is the code name?")
    assert answer == "The code name is Heron."
    assert metadata["ls_model_name"] == "default"  # version 2 names no model
    await lg_client.assistants.set_latest(aid, 1)
    answer, metadata = await _answer(lg_client, aid, "What is the code name?")
    assert (answer, metadata["ls_model_name"]) == ("The code name is Falcon.", "reviewer")


async def test_an_assistants_guardrails_halt_its_runs(lg_client) -> None:
    strict = await lg_client.assistants.create("orchestrator", config={"configurable": {
        "guardrails": {"max_agents_per_thread": 0}}})
    thread = await lg_client.threads.create()
    result = await lg_client.runs.wait(thread["thread_id"], strict["assistant_id"], input={"messages": [
        {"role": "user", "content": "spawn a coder agent"}]})
    (interrupt,) = result["__interrupt__"]
    assert interrupt["value"]["type"] == "guardrail"
    assert "exceed 0 agents" in interrupt["value"]["reason"]


async def test_an_assistants_context_budget_shrinks_its_prompts(lg_client) -> None:
    long_turn = "remember the code name Osprey. " + "background " * 600
    spent = {}
    for budget in (200_000, 300):
        assistant = await lg_client.assistants.create("orchestrator", config={"configurable": {
            "context_token_budget": budget}})
        thread = await lg_client.threads.create()
        await _answer(lg_client, assistant["assistant_id"], long_turn, thread["thread_id"])
        answer, _ = await _answer(lg_client, assistant["assistant_id"], "What is the code name?", thread["thread_id"])
        assert answer == "The code name is Osprey."  # kept in the summary of the older turn
        state = await lg_client.threads.get_state(thread["thread_id"])
        spent[budget] = state["values"]["messages"][-1]["usage_metadata"]["input_tokens"]
    assert spent[300] < 700 < 1500 < spent[200_000]


async def test_bad_settings_are_refused_and_change_nothing(lg_client) -> None:
    before = await lg_client.assistants.count(graph_id="agent")
    for configurable in ({"context_token_budget": 5}, {"model": "nosuch:model"},
                         {"guardrails": {"max_iterations": 0}},
                         {"mcp_servers": {"bad__name": {"transport": "http", "url": "http://x/mcp"}}},
                         {"mcp_servers": {"docs": {"transport": "ftp", "url": "ftp://x"}}}):
        with pytest.raises(UnprocessableEntityError):
            await lg_client.assistants.create("agent", config={"configurable": configurable})
    assert await lg_client.assistants.count(graph_id="agent") == before
    assistant = await lg_client.assistants.create("agent", config={"configurable": {"system_prompt": "x"}})
    with pytest.raises(UnprocessableEntityError):
        await lg_client.assistants.update(assistant["assistant_id"], context={"context_token_budget": -1})
    assert len(await lg_client.assistants.get_versions(assistant["assistant_id"])) == 1
