"""The Threads and runs tab in Chromium: fork a thread from an earlier checkpoint and continue it."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.panel.conftest import open_tab, shoot

LONG = 180_000


async def test_a_thread_is_forked_from_an_earlier_checkpoint(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    thread = await client.threads.create()
    tid = thread["thread_id"]
    for name in ("alpha", "beta"):
        await client.runs.wait(tid, "orchestrator",
                               input={"messages": [{"role": "user", "content": f"remember the code name {name}"}]})
    # The checkpoint at the end of the first run: the code name was alpha then.
    history = await client.threads.get_history(tid, limit=50)
    first_done = [s for s in history if not s["next"] and any(
        "beta" in str(m.get("content")) for m in s["values"].get("messages", [])) is False
        and any("alpha" in str(m.get("content")) for m in s["values"].get("messages", []))]
    assert first_done, [s["metadata"] for s in history]
    checkpoint_id = first_done[0]["checkpoint"]["checkpoint_id"]

    await open_tab(page, "Threads and runs")
    await page.locator("#threads-thread-id textarea").fill(tid)
    await page.locator("#threads-load").click()
    row = page.locator("#threads-history").get_by_text(checkpoint_id)
    await expect(row).to_be_visible(timeout=60_000)
    await row.click()
    await expect(page.locator("#threads-checkpoint-id textarea")).to_have_value(checkpoint_id)
    await expect(page.locator("#threads-state")).to_contain_text("alpha")
    await page.locator("#threads-as-node input, #threads-as-node textarea").first.fill("ingest")
    values = {"messages": [{"role": "user", "content": "what is the code name?"}]}
    editor = page.locator("#threads-fork-values .cm-content")
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(json.dumps(values))
    await page.locator("#threads-fork").click()
    await expect(page.locator("#threads-note")).to_contain_text("finished", timeout=LONG)
    branch = page.locator("#threads-branch")
    await expect(branch).to_contain_text("The code name is alpha.")
    await expect(branch).not_to_contain_text("beta")
    await shoot(page, screenshot_dir, "threads-fork")
    state = await client.threads.get_state(tid)
    # The fork is the thread's head now; the branch it left (with beta) is still in its history.
    assert state["values"]["messages"][-1]["content"] == "The code name is alpha."
    assert not any("beta" in str(m.get("content")) for m in state["values"]["messages"])
