"""The operator tabs in Chromium against the whole system: the event monitor (an event within
2 s, a filter hiding it), the fleet (spawn and kill), workspaces (create a file, view it, run a
command and watch its output stream; snapshot, change, diff, restore), and a screenshot of every
tab for the README."""

from __future__ import annotations

import re
import time
import uuid

from playwright.async_api import expect

from quadracode_ray.envelope import Envelope
from tests.panel.conftest import open_tab, shoot

LONG = 120_000
TABS = ["Chat", "Threads and runs", "Event monitor", "Fleet", "Workspaces", "Metrics", "Settings"]


async def _fill(page, selector: str, text: str) -> None:
    field = page.locator(f"{selector} textarea, {selector} input").first
    await field.fill(text)


async def _type_code(page, selector: str, text: str) -> None:
    editor = page.locator(f"{selector} .cm-content")
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


async def test_an_event_shows_in_the_monitor_within_2_s_and_a_filter_hides_it(page, system, screenshot_dir):
    await open_tab(page, "Event monitor")
    marker = f"panel-probe-{uuid.uuid4().hex[:8]}"
    await page.locator("#events-apply").click()
    await expect(page.locator("#events-note")).to_contain_text("live", timeout=60_000)
    sent = time.monotonic()
    await system.events.publish.remote(Envelope(sender="panel-test", recipient="nobody", kind="note",
                                                payload={"text": marker}))
    # Gradio's dataframe keeps hidden copies of its cells (for sizing): only visible ones count.
    row = page.locator("#events-table").get_by_text("panel-test").filter(visible=True).first
    await expect(row).to_be_visible(timeout=10_000)
    seen_after = time.monotonic() - sent
    assert seen_after < 2.0, f"the event took {seen_after:.2f} s to show"
    await row.click()
    await expect(page.locator("#events-payload")).to_contain_text(marker)
    await shoot(page, screenshot_dir, "events-live")
    await _fill(page, "#events-sender", "someone-else")
    await page.locator("#events-apply").click()
    await expect(page.locator("#events-table").get_by_text("panel-test").filter(visible=True)).to_have_count(0, timeout=30_000)
    await _fill(page, "#events-regex", "(unclosed")
    await page.locator("#events-apply").click()
    await expect(page.get_by_text(re.compile("bad regex"))).to_be_visible(timeout=30_000)


async def test_an_agent_is_spawned_and_killed_from_the_fleet_tab(page, screenshot_dir):
    await open_tab(page, "Fleet")
    await _fill(page, "#fleet-kind", "reviewer")
    await page.locator("#fleet-spawn").click()
    await expect(page.locator("#fleet-note")).to_contain_text("spawned", timeout=LONG)
    note = await page.locator("#fleet-note").inner_text()
    agent_id = note.split("spawned", 1)[1].strip()
    table = page.locator("#fleet-table")
    await expect(table.get_by_text(agent_id).filter(visible=True).first).to_be_visible(timeout=30_000)
    await expect(table).to_contain_text("reviewer")
    await shoot(page, screenshot_dir, "fleet-spawned")
    await _fill(page, "#fleet-agent-id", agent_id)
    await page.locator("#fleet-kill").click()
    await expect(page.locator("#fleet-note")).to_contain_text(f"killed {agent_id}", timeout=LONG)
    await expect(table.get_by_text(agent_id).filter(visible=True)).to_have_count(0, timeout=30_000)


async def test_a_workspace_file_is_created_viewed_and_run_with_streamed_output(page, screenshot_dir):
    await open_tab(page, "Workspaces")
    await page.locator("#ws-create").click()
    await expect(page.locator("#ws-table")).to_contain_text("default", timeout=LONG)
    await _fill(page, "#ws-path", "panel/count.py")
    await page.keyboard.press("Escape")
    source = "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True)\n    time.sleep(1.5)\n"
    await _type_code(page, "#ws-editor", source)
    await page.locator("#ws-save").click()
    await expect(page.locator("#ws-note")).to_contain_text("saved panel/count.py", timeout=LONG)
    await expect(page.locator("#ws-tree")).to_contain_text("count.py")
    await _type_code(page, "#ws-editor", "")
    await page.locator("#ws-open").click()
    await expect(page.locator("#ws-editor")).to_contain_text("print(f'tick {i}'", timeout=LONG)
    await _fill(page, "#ws-command", "python3 panel/count.py")
    await page.locator("#ws-run").click()
    output = page.locator("#ws-output")
    # Streamed: the first line is shown while the command still runs (no exit status yet).
    await expect(output).to_contain_text("tick 0", timeout=LONG)
    assert "[exit" not in await output.inner_text()
    await expect(output).to_contain_text("tick 2", timeout=LONG)
    await expect(output).to_contain_text("[exit 0]")
    await shoot(page, screenshot_dir, "workspace-exec")


async def test_a_snapshot_is_taken_diffed_and_restored(page, screenshot_dir):
    await open_tab(page, "Workspaces")
    await page.locator("#ws-create").click()
    await _fill(page, "#ws-path", "snap/notes.txt")
    await page.keyboard.press("Escape")
    await _type_code(page, "#ws-editor", "first version\n")
    await page.locator("#ws-save").click()
    await expect(page.locator("#ws-note")).to_contain_text("saved", timeout=LONG)
    await _fill(page, "#ws-snapshot-label", "before-change")
    await page.locator("#ws-snapshot-take").click()
    await expect(page.locator("#ws-note")).to_contain_text("taken", timeout=LONG)
    await _type_code(page, "#ws-editor", "second version\n")
    await page.locator("#ws-save").click()
    await expect(page.locator("#ws-note")).to_contain_text("saved", timeout=LONG)
    await page.locator("#ws-snapshot-diff").click()
    diff = page.locator("#ws-diff")
    await expect(diff).to_contain_text("snap/notes.txt", timeout=LONG)
    await expect(diff).to_contain_text("modified (1)")
    await shoot(page, screenshot_dir, "workspace-diff")
    await page.locator("#ws-snapshot-restore").click()
    await expect(page.locator("#ws-note")).to_contain_text("restored", timeout=LONG)
    await page.locator("#ws-open").click()
    await expect(page.locator("#ws-editor")).to_contain_text("first version", timeout=LONG)
    await expect(page.locator("#ws-editor")).not_to_contain_text("second version")


async def test_every_tab_renders_without_an_error(page, screenshot_dir):
    for title in TABS:
        await open_tab(page, title)
        # Not "networkidle": the event monitor's live stream keeps a request open.
        await expect(page.get_by_role("tab", name=title, exact=True)).to_have_attribute("aria-selected", "true")
        await shoot(page, screenshot_dir, "tab-" + title.lower().split()[0])
    assert await page.locator(".toast-body.error, [data-testid='toast-body']").count() == 0
