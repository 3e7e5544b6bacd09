"""The Threads and runs tab in Chromium: fork a thread from an earlier checkpoint and continue it,
replay from a checkpoint, search by status and metadata with a thread's runs shown."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from playwright.async_api import expect

from tests.panel.conftest import open_tab, shoot

LONG = 180_000
# Priced, so the scripted model's calls cost something the tab can show (dollars per million tokens).
PRICE = {"input_per_mtok": 300.0, "output_per_mtok": 1500.0}
E2E_SETTINGS = {"model_prices": {"scripted:default": PRICE}}


async def _pick_checkpoint(page, thread_id: str, checkpoint_id: str) -> None:
    """Load the thread in the tab and click one of its checkpoints."""
    await open_tab(page, "Threads and runs")
    await page.locator("#threads-thread-id textarea").fill(thread_id)
    await page.locator("#threads-load").click()
    row = page.locator("#threads-history").get_by_text(checkpoint_id)
    await expect(row).to_be_visible(timeout=60_000)
    await row.click()
    await expect(page.locator("#threads-checkpoint-id textarea")).to_have_value(checkpoint_id)


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

    await _pick_checkpoint(page, tid, checkpoint_id)
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
    # The checkpoints list shows the branch: the fork's own checkpoint, and the continued run's
    # newest one at the top.
    forked = re.search(r"new branch from (\S+)\)", await page.locator("#threads-note").inner_text())
    assert forked, await page.locator("#threads-note").inner_text()
    history = page.locator("#threads-history")
    await expect(history.get_by_text(forked[1], exact=True).filter(visible=True)).to_have_count(1, timeout=60_000)
    newest = (await client.threads.get_history(tid, limit=1))[0]["checkpoint"]["checkpoint_id"]
    await expect(history.get_by_text(newest, exact=True).filter(visible=True)).to_have_count(1, timeout=60_000)
    # The thread table, read while the fork ran, says idle again once it ended.
    await expect(page.locator("#threads-table").get_by_text("busy", exact=True).filter(visible=True)).to_have_count(
        0, timeout=30_000)
    await shoot(page, screenshot_dir, "threads-fork")
    state = await client.threads.get_state(tid)
    # The fork is the thread's head now; the branch it left (with beta) is still in its history.
    assert state["values"]["messages"][-1]["content"] == "The code name is alpha."
    assert not any("beta" in str(m.get("content")) for m in state["values"]["messages"])


async def test_a_thread_is_replayed_from_a_checkpoint(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "orchestrator",
                           input={"messages": [{"role": "user", "content": "remember the code name gamma"}]})
    history = await client.threads.get_history(tid, limit=50)
    # The oldest checkpoint that holds the message and still has a step to run: replay starts there.
    pending = [s for s in history if s["next"] and any(
        "gamma" in str(m.get("content")) for m in s["values"].get("messages", []))]
    assert pending, [(s["metadata"], s["next"]) for s in history]
    checkpoint_id = pending[-1]["checkpoint"]["checkpoint_id"]

    await _pick_checkpoint(page, tid, checkpoint_id)
    await page.locator("#threads-replay").click()
    await expect(page.locator("#threads-note")).to_contain_text(f"replay from {checkpoint_id} finished",
                                                                timeout=LONG)
    await expect(page.locator("#threads-branch")).to_contain_text("Noted: the code name is gamma.")
    await shoot(page, screenshot_dir, "threads-replay")
    runs = await client.runs.list(tid)
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs), runs
    # The replay is a new branch: the thread's history grew past what it had.
    assert len(await client.threads.get_history(tid, limit=100)) > len(history)


async def test_threads_are_searched_by_status_and_metadata_and_show_their_runs(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    tag = uuid.uuid4().hex[:6]
    wanted = (await client.threads.create(metadata={"project": f"p-{tag}"}))["thread_id"]
    other = (await client.threads.create(metadata={"project": f"q-{tag}"}))["thread_id"]
    await client.runs.wait(wanted, "orchestrator",
                           input={"messages": [{"role": "user", "content": "remember the code name delta"}]})

    await open_tab(page, "Threads and runs")
    table = page.locator("#threads-table")
    await page.locator("#threads-metadata textarea").fill(f"project=p-{tag}")
    await page.locator("#threads-status input").click()
    await page.get_by_role("option", name="idle", exact=True).click()
    await page.locator("#threads-search").click()
    row = table.get_by_text(wanted).filter(visible=True).first
    await expect(row).to_be_visible(timeout=60_000)
    await expect(table.get_by_text(other).filter(visible=True)).to_have_count(0)
    # Clicking the thread lists its runs with their status and duration.
    await row.click()
    runs = page.locator("#threads-runs")
    await expect(runs.get_by_text("success").filter(visible=True).first).to_be_visible(timeout=60_000)
    await expect(runs).to_contain_text(re.compile(r"\d+(\.\d+)?\s*s"))
    await shoot(page, screenshot_dir, "threads-search")
    # Another status hides it; a bad metadata filter is a readable error, not a traceback.
    await page.locator("#threads-status input").click()
    await page.get_by_role("option", name="busy", exact=True).click()
    await page.locator("#threads-search").click()
    await expect(table.get_by_text(wanted).filter(visible=True)).to_have_count(0, timeout=60_000)
    await page.locator("#threads-metadata textarea").fill("{not json")
    await page.locator("#threads-search").click()
    await expect(page.get_by_text(re.compile("metadata filter is not valid JSON"))).to_be_visible(timeout=30_000)


async def test_a_running_run_is_cancelled_from_the_threads_runs(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    from tests.e2e.conftest import eventually

    client = get_client(url=panel_api, timeout=120)
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "orchestrator",
                                   input={"messages": [{"role": "user", "content": "run `sleep 60`"}]})

    async def running():
        return (await client.runs.get(tid, run["run_id"]))["status"] == "running"

    await eventually(running, timeout=120, what="the run to start")
    await open_tab(page, "Threads and runs")
    await page.locator("#threads-thread-id textarea").fill(tid)
    await page.locator("#threads-load").click()
    runs = page.locator("#threads-runs")
    row = runs.get_by_text(run["run_id"]).filter(visible=True).first
    await expect(row).to_be_visible(timeout=60_000)
    await expect(runs.get_by_text("running", exact=True).filter(visible=True).first).to_be_visible()
    await row.click()
    await expect(page.locator("#threads-run-id textarea")).to_have_value(run["run_id"])
    await page.locator("#threads-cancel-run").click()
    await expect(page.locator("#threads-note")).to_contain_text(f"cancelled run {run['run_id']}", timeout=LONG)
    # The list shows the status the run ended in, and the API agrees.
    await expect(runs.get_by_text("interrupted", exact=True).filter(visible=True).first).to_be_visible()
    await expect(runs.get_by_text("running", exact=True).filter(visible=True)).to_have_count(0)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    await shoot(page, screenshot_dir, "threads-cancel")


async def test_a_threads_tokens_and_cost_are_shown_from_what_its_runs_spent(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    tag = uuid.uuid4().hex[:6]
    tid = (await client.threads.create(metadata={"project": f"spend-{tag}"}))["thread_id"]
    await client.runs.wait(tid, "orchestrator", input={"messages": [{"role": "user", "content": "list agents"}]})
    usage = (await client.threads.get(tid))["metadata"]["usage"]
    # The run's model calls, counted and priced by the system.
    assert usage["model_calls"] >= 1 and usage["total_tokens"] > 0, usage
    cost = (usage["input_tokens"] * PRICE["input_per_mtok"] + usage["output_tokens"] * PRICE["output_per_mtok"]) / 1e6
    assert usage["cost_usd"] == pytest.approx(cost) and cost > 0.0001, usage

    await open_tab(page, "Threads and runs")
    await page.locator("#threads-metadata textarea").fill(f"project=spend-{tag}")
    await page.locator("#threads-search").click()
    table = page.locator("#threads-table")
    await expect(table.get_by_text(tid).filter(visible=True).first).to_be_visible(timeout=60_000)
    await expect(table.get_by_text(f"{usage['total_tokens']:,}", exact=True).filter(visible=True)).to_have_count(1)
    await expect(table.get_by_text(f"${usage['cost_usd']:.4f}", exact=True).filter(visible=True)).to_have_count(1)
    await shoot(page, screenshot_dir, "threads-usage")


async def test_a_thread_busy_at_page_load_is_shown_idle_once_its_run_ended(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    from tests.e2e.conftest import eventually

    client = get_client(url=panel_api, timeout=120)
    tag = uuid.uuid4().hex[:6]
    tid = (await client.threads.create(metadata={"project": f"busy-{tag}"}))["thread_id"]
    gate = f"release-{tag}"  # the run's command waits for this file in the orchestrator's workspace
    run = await client.runs.create(tid, "orchestrator", input={"messages": [
        {"role": "user", "content": f"run `while [ ! -e {gate} ]; do sleep 0.2; done; echo released`"}]})

    async def running():
        return (await client.runs.get(tid, run["run_id"]))["status"] == "running"

    await eventually(running, timeout=120, what="the run to start")
    # A page loaded now reads the thread busy, and its run running.
    await page.reload(timeout=180_000)
    await page.wait_for_selector("#tab-chat", state="attached", timeout=180_000)
    await open_tab(page, "Threads and runs")
    # The tab's table at page load lists every thread: this one is the only one at work.
    table = page.locator("#threads-table")
    await expect(table.get_by_text(tid).filter(visible=True).first).to_be_visible(timeout=60_000)
    busy = table.get_by_text("busy", exact=True).filter(visible=True)
    await expect(busy).to_have_count(1)
    await page.locator("#threads-thread-id textarea").fill(tid)
    await page.locator("#threads-load").click()
    runs = page.locator("#threads-runs")
    await expect(runs.get_by_text("running", exact=True).filter(visible=True).first).to_be_visible(timeout=60_000)
    await shoot(page, screenshot_dir, "threads-busy")
    async with httpx.AsyncClient(base_url=panel_api, timeout=120) as http:
        (await http.post("/workspaces/default/exec", json={"command": f"touch {gate}"})).raise_for_status()
    await client.runs.join(tid, run["run_id"])
    assert (await client.threads.get(tid))["status"] == "idle"
    # Without a click: the tab reads again what it showed at work.
    await expect(busy).to_have_count(0, timeout=30_000)
    await expect(table.get_by_text(tid).filter(visible=True).first).to_be_visible()
    await expect(runs.get_by_text("success", exact=True).filter(visible=True).first).to_be_visible(timeout=30_000)
    await expect(runs.get_by_text("running", exact=True).filter(visible=True)).to_have_count(0)
    await shoot(page, screenshot_dir, "threads-busy-then-idle")


async def test_a_threads_checkpoints_follow_a_run_started_elsewhere(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    client = get_client(url=panel_api, timeout=120)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "orchestrator",
                           input={"messages": [{"role": "user", "content": "remember the code name iota"}]})
    await open_tab(page, "Threads and runs")
    await page.locator("#threads-thread-id textarea").fill(tid)
    await page.locator("#threads-load").click()
    history = page.locator("#threads-history")
    before = (await client.threads.get_history(tid, limit=1))[0]["checkpoint"]["checkpoint_id"]
    await expect(history.get_by_text(before, exact=True).filter(visible=True)).to_have_count(1, timeout=60_000)
    shown_before = await history.get_by_text(re.compile(r"^[0-9a-f-]{36}$")).filter(visible=True).count()
    # A run on the thread from outside the panel: the tab shows its checkpoints and the run
    # without a click.
    await client.runs.wait(tid, "orchestrator",
                           input={"messages": [{"role": "user", "content": "remember the code name kappa"}]})
    after = (await client.threads.get_history(tid, limit=1))[0]["checkpoint"]["checkpoint_id"]
    assert after != before
    await expect(history.get_by_text(after, exact=True).filter(visible=True)).to_have_count(1, timeout=30_000)
    assert await history.get_by_text(re.compile(r"^[0-9a-f-]{36}$")).filter(visible=True).count() > shown_before
    runs = page.locator("#threads-runs")
    await expect(runs.get_by_text("success", exact=True).filter(visible=True)).to_have_count(2, timeout=30_000)
    # The newest checkpoint's state holds the second run's answer.
    await history.get_by_text(after, exact=True).filter(visible=True).click()
    await expect(page.locator("#threads-state")).to_contain_text("kappa", timeout=60_000)
    await shoot(page, screenshot_dir, "threads-history-refreshed")
