"""The Chat tab in Chromium against the whole system: a streamed reply with its tool calls as
collapsible steps, a delegated task's result arriving on its own (no reload), an interrupt
answered from its card (respond, edit), a user's own graph picked and chatted with."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.panel.conftest import shoot

LONG = 180_000
# A graph a user registered (the ``graphs`` setting), beside the built-in orchestrator and agent.
PANEL_API_SETTINGS = {"graphs": {"user-chat": "tests.api.graphs:chat"}}


async def _send(page, text: str) -> None:
    await expect(page.locator("#chat-assistant input")).to_have_value(re.compile("orchestrator"), timeout=60_000)
    await page.locator("#chat-input textarea").fill(text)
    await page.locator("#chat-send").click()


async def test_a_chat_message_gets_a_streamed_reply_with_its_tool_calls_as_steps(page, screenshot_dir):
    await _send(page, "list agents")
    log = page.locator("#chat-log")
    await expect(log.get_by_text("list agents", exact=True)).to_be_visible()
    # The tool call is a collapsible step titled with the tool's name; the reply follows it.
    await expect(log.get_by_text("list_agents").first).to_be_visible(timeout=LONG)
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    assert await log.locator(".message.bot, [data-testid='bot']").count() >= 2
    await shoot(page, screenshot_dir, "chat-reply")


async def test_a_delegated_tasks_result_arrives_on_its_own(page, screenshot_dir):
    await page.evaluate("() => { window.__samePage = true; }")  # gone if the page were reloaded
    await _send(page, "delegate to a coder agent: write hello.py that prints 42 and run it")
    tasks = page.locator("#chat-tasks")
    # The run ends at once with the task delegated...
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    await expect(tasks).to_contain_text(re.compile("pending|running|succeeded"), timeout=LONG)
    await shoot(page, screenshot_dir, "chat-delegated")
    # ...and the agent's result shows up later on the same page, with no reload or click.
    await expect(tasks).to_contain_text("succeeded", timeout=LONG)
    log = page.locator("#chat-log")
    await expect(log).to_contain_text(re.compile(r"succeeded: 42"), timeout=LONG)
    assert await page.evaluate("() => window.__samePage === true")
    # The result is shown as the agent's (its name, the task, the status), open, not as a message
    # the human typed.
    step = log.get_by_text(re.compile(r"agent \S+ · task \S+ · succeeded")).first
    await expect(step).to_be_visible()
    agent_id, task_id = re.match(r"agent (\S+) · task (\S+)", (await step.inner_text()).strip()).groups()
    await expect(tasks.get_by_text(agent_id, exact=True).filter(visible=True)).to_have_count(1)
    await expect(tasks.get_by_text(task_id, exact=True).filter(visible=True)).to_have_count(1)
    bots, users = log.locator(".message.bot, [data-testid='bot']"), log.locator(".message.user, [data-testid='user']")
    await expect(bots.filter(has_text=re.compile(r"agent \S+ · task \S+ · succeeded")).filter(has_text="42")
                 ).not_to_have_count(0)
    await expect(users.filter(has_text="delegate to a coder agent")).not_to_have_count(0)  # the human's own
    await expect(users.filter(has_text="[task ")).to_have_count(0)
    await expect(users.filter(has_text="artifacts:")).to_have_count(0)  # (the human's own text has "42")
    await shoot(page, screenshot_dir, "chat-task-result")


async def _asked(page, question: str):
    """Ask the orchestrator to ask ``question``: the interrupt card it halts on."""
    await _send(page, f"ask me {question}")
    card = page.locator("#interrupt-card").first
    await expect(card).to_be_visible(timeout=LONG)
    await expect(card).to_contain_text(question)
    return card


async def test_an_interrupt_is_answered_from_its_card(page, screenshot_dir):
    card = await _asked(page, "which colour to use")
    # The thread's label is read again once the run halted (it says so), and the card stays.
    label = page.locator("#chat-thread input")
    await expect(label).to_have_value(re.compile(r"… interrupted\b"), timeout=60_000)
    await expect(card).to_be_visible()
    await expect(page.locator("#chat-status")).to_contain_text("waits for your answer")
    await shoot(page, screenshot_dir, "chat-interrupt-card")
    await page.locator("#interrupt-respond-text textarea").fill("teal")
    await page.locator("#interrupt-respond").click()
    await expect(card).to_be_hidden(timeout=LONG)
    await expect(page.locator("#chat-log")).to_contain_text("teal", timeout=LONG)
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    await expect(label).to_have_value(re.compile(r"… idle\b"), timeout=60_000)


async def test_an_existing_thread_is_opened_with_its_conversation(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, "orchestrator",
                           input={"messages": [{"role": "user", "content": "remember the code name omega"}]})
    await page.locator("#chat-refresh-threads").click()
    await page.locator("#chat-thread input").click()
    await page.get_by_role("option", name=re.compile(f"^{thread[:8]}")).click()
    log = page.locator("#chat-log")
    await expect(log).to_contain_text("remember the code name omega", timeout=60_000)
    await expect(log).to_contain_text("Noted: the code name is omega.")
    await shoot(page, screenshot_dir, "chat-existing-thread")
    # A new thread: created through the API, picked, its conversation empty.
    label = page.locator("#chat-thread input")
    await page.locator("#chat-new-thread").click()
    await expect(label).not_to_have_value(re.compile(f"^{thread[:8]}"), timeout=60_000)
    await expect(label).to_have_value(re.compile(r"^[0-9a-f]{8}… idle"))
    await expect(log).not_to_contain_text("omega")
    created = (await label.input_value()).split("…")[0]
    assert any(t["thread_id"].startswith(created) for t in await client.threads.search(limit=100))


async def test_an_interrupt_is_answered_by_editing_its_resume_value(page, screenshot_dir):
    card = await _asked(page, "which port to listen on")
    editor = page.locator("#interrupt-edit-value .cm-content")
    await expect(editor).to_contain_text('"yes"')  # prefilled with what Accept would send
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text('"port 8443"')
    await page.locator("#interrupt-edit").click()
    await expect(card).to_be_hidden(timeout=LONG)
    log = page.locator("#chat-log")
    await expect(log).to_contain_text("port 8443", timeout=LONG)
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    await expect(page.locator("#chat-thread input")).to_have_value(re.compile(r"… idle\b"), timeout=60_000)
    await shoot(page, screenshot_dir, "chat-interrupt-edited")


async def test_a_users_own_graph_is_offered_and_chatted_with(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    picker = page.locator("#chat-assistant input")
    await expect(picker).to_have_value(re.compile("orchestrator"), timeout=60_000)
    await picker.click()
    # Every assistant: the built-in graphs and the one the user registered.
    for graph in ("orchestrator", "agent", "user-chat"):
        await expect(page.get_by_role("option", name=re.compile(rf"\({graph}\)$"))).to_be_visible()
    await shoot(page, screenshot_dir, "chat-assistant-picker")
    await page.get_by_role("option", name=re.compile(r"\(user-chat\)$")).click()
    await expect(picker).to_have_value(re.compile(r"\(user-chat\)$"))
    await page.locator("#chat-input textarea").fill("hi from the panel")
    await page.locator("#chat-send").click()
    log = page.locator("#chat-log")
    await expect(log).to_contain_text("hello there friend", timeout=LONG)
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    # The run went to the user's graph: its thread's only run names that graph's assistant.
    shown = (await page.locator("#chat-thread input").input_value()).split("…")[0].strip()
    client = get_client(url=panel_api, timeout=60)
    thread = next(t["thread_id"] for t in await client.threads.search(limit=100) if t["thread_id"].startswith(shown))
    runs = await client.runs.list(thread)
    assistants = {a["assistant_id"]: a["graph_id"] for a in await client.assistants.search(limit=100)}
    assert [assistants.get(r["assistant_id"]) for r in runs] == ["user-chat"], runs
    await shoot(page, screenshot_dir, "chat-user-graph")
