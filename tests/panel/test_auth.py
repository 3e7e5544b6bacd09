"""The panel against an API with keys on, in Chromium: it asks for a key, says clearly when a key
is refused, and with a good key shows only that owner's threads and workspaces."""

from __future__ import annotations

import json
import re
import uuid

import httpx
from playwright.async_api import expect

from tests.panel.conftest import open_tab, shoot

LONG = 180_000
ALICE_KEY = "alice-" + uuid.uuid4().hex
BOB_KEY = "bob-" + uuid.uuid4().hex
PANEL_API_SETTINGS = {"auth_api_keys": json.dumps({"alice": ALICE_KEY, "bob": BOB_KEY})}


async def _use_key(page, key: str) -> None:
    await page.locator("#api-key input").fill(key)
    await page.locator("#api-key-use").click()


async def test_the_panel_asks_for_a_key_refuses_a_wrong_one_and_scopes_to_its_owner(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    status = page.locator("#api-key-status")
    await expect(status).to_contain_text("This API asks for a key", timeout=60_000)
    await shoot(page, screenshot_dir, "auth-asks-for-key")

    await _use_key(page, "not-a-key-" + uuid.uuid4().hex[:6])
    await expect(status).to_contain_text("Key refused: the API refused this key", timeout=60_000)
    await expect(status).to_contain_text("Invalid API key")
    await shoot(page, screenshot_dir, "auth-wrong-key")

    # Each owner's thread and workspace, made through the API with its own key.
    made = {}
    suffix = uuid.uuid4().hex[:6]
    for owner, key in (("alice", ALICE_KEY), ("bob", BOB_KEY)):
        client = get_client(url=panel_api, api_key=None, headers={"X-Api-Key": key})
        made[owner] = (await client.threads.create(metadata={"panel_auth": owner}))["thread_id"]
        async with httpx.AsyncClient(base_url=panel_api, headers={"X-Api-Key": key}, timeout=180) as http:
            (await http.post("/workspaces", json={"workspace_id": f"{owner}-{suffix}"})).raise_for_status()
    try:
        await _use_key(page, ALICE_KEY)
        await expect(status).to_contain_text("Key accepted", timeout=60_000)
        await open_tab(page, "Threads and runs")
        await page.locator("#threads-search").click()
        table = page.locator("#threads-table")
        await expect(table.get_by_text(made["alice"]).filter(visible=True).first).to_be_visible(timeout=60_000)
        await expect(table.get_by_text(made["bob"]).filter(visible=True)).to_have_count(0)
        await open_tab(page, "Workspaces")
        await page.locator("#ws-refresh").click()
        workspaces = page.locator("#ws-table")
        await expect(workspaces.get_by_text(f"alice-{suffix}").filter(visible=True).first).to_be_visible(
            timeout=LONG)
        await expect(workspaces.get_by_text(f"bob-{suffix}").filter(visible=True)).to_have_count(0)
        # The key goes with the chat's calls too: a message gets its reply on a thread of alice's.
        await open_tab(page, "Chat")
        await expect(page.locator("#chat-assistant input")).to_have_value(re.compile("orchestrator"),
                                                                          timeout=60_000)
        await page.locator("#chat-input textarea").fill("remember the code name auth-ok")
        await page.locator("#chat-send").click()
        await expect(page.locator("#chat-log")).to_contain_text("Noted: the code name is auth-ok", timeout=LONG)
        await shoot(page, screenshot_dir, "auth-alice")
        alice_threads = await get_client(url=panel_api, headers={"X-Api-Key": ALICE_KEY}).threads.search(limit=50)
        assert len(alice_threads) == 2
        # Nothing in the panel showed a traceback.
        assert await page.get_by_text("Traceback").count() == 0
    finally:
        for owner, key in (("alice", ALICE_KEY), ("bob", BOB_KEY)):
            async with httpx.AsyncClient(base_url=panel_api, headers={"X-Api-Key": key}, timeout=180) as http:
                await http.delete(f"/workspaces/{owner}-{suffix}", params={"volumes": "true"})
