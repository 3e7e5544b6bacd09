"""The Chat tab in Chromium against the whole system: a streamed reply with its tool calls as
collapsible steps, a delegated task's result arriving on its own, an interrupt resumed from its
card."""

from __future__ import annotations

from playwright.async_api import expect

from tests.panel.conftest import shoot

LONG = 120_000


async def _send(page, text: str) -> None:
    await expect(page.locator("#chat-assistant input")).to_have_value(
        __import__("re").compile("orchestrator"), timeout=60_000)
    await page.locator("#chat-input textarea").fill(text)
    await page.locator("#chat-send").click()


async def test_a_chat_message_gets_a_streamed_reply_with_its_tool_calls_as_steps(page, screenshot_dir):
    await _send(page, "list agents")
    log = page.locator("#chat-log")
    await expect(log.get_by_text("list agents", exact=True)).to_be_visible()
    await expect(log.get_by_text("list_agents").first).to_be_visible(timeout=LONG)
    await expect(page.locator("#chat-status")).to_contain_text("run finished", timeout=LONG)
    await shoot(page, screenshot_dir, "chat-reply")
