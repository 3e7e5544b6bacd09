"""The operator tabs in Chromium against the whole system: the event monitor (an event within
2 s, a filter hiding it), the fleet (spawn and kill), workspaces (create a file, view it, run a
command and watch its output stream; snapshot, change, diff, restore; upload, binary download,
background processes, a path escape refused), the fleet's cap, hotpath and force, the settings,
the event monitor's older pages, pause and resume, and a screenshot of every tab for the README."""

from __future__ import annotations

import re
import time
import uuid

import httpx
from playwright.async_api import expect

from quadracode_ray.envelope import Envelope
from serve_app.panel import views
from tests.e2e.conftest import eventually
from tests.panel.conftest import open_tab, shoot

LONG = 120_000
FLEET_CAP = 2
E2E_SETTINGS = {"fleet_max_agents": FLEET_CAP}
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
    # The live watch stays pending while it runs: no progress bar, timer or outline drawn for it.
    for part in ("#events-table", "#events-note", "#events-count"):
        busy = page.locator(f"{part} .generating, {part} .eta-bar, {part} .progress-text, {part} .progress-bar")
        await expect(busy.filter(visible=True)).to_have_count(0)
    await row.click()
    await expect(page.locator("#events-payload")).to_contain_text(marker)
    await shoot(page, screenshot_dir, "events-live")
    await _fill(page, "#events-sender", "someone-else")
    await page.locator("#events-apply").click()
    await expect(page.locator("#events-table").get_by_text("panel-test").filter(visible=True)).to_have_count(0, timeout=30_000)
    await _fill(page, "#events-regex", "(unclosed")
    await page.locator("#events-apply").click()
    await expect(page.get_by_text(re.compile("bad regex"))).to_be_visible(timeout=30_000)


async def test_each_event_filter_shows_only_the_live_events_it_selects(page, system, screenshot_dir):
    sender = f"filters-{uuid.uuid4().hex[:6]}"
    await open_tab(page, "Event monitor")
    await _fill(page, "#events-sender", sender)
    table, count = page.locator("#events-table"), page.locator("#events-count")
    for field, wanted in (("recipient", "a"), ("kind", "b"), ("thread", "c"), ("regex", "d")):
        # Four events from one sender, each alone in its recipient, kind, thread and payload word
        # (a fresh tag each round: none of them is in the history yet).
        tag = uuid.uuid4().hex[:6]
        variants = [Envelope(sender=sender, recipient=f"to-{n}-{tag}", kind=f"kind-{n}-{tag}",
                             thread_id=f"thread-{n}-{tag}", payload={"word": f"word-{n}-{tag}"}) for n in "abcd"]
        value = {"recipient": f"to-a-{tag}", "kind": f"kind-b-{tag}", "thread": f"thread-c-{tag}",
                 "regex": rf'"word-[d]-{tag}"'}[field]
        for other in ("recipient", "kind", "thread", "regex"):
            await _fill(page, f"#events-{other}", value if other == field else "")
        await page.locator("#events-apply").click()
        await expect(count).to_contain_text(re.compile(r"^\s*0 events shown"), timeout=60_000)
        await expect(page.locator("#events-note")).to_contain_text("live")
        for envelope in variants:
            await system.events.publish.remote(envelope)
        # Only the event this filter selects shows, pushed live (no reload, no click).
        await expect(table.get_by_text(f"kind-{wanted}-{tag}", exact=True).filter(visible=True)).to_have_count(
            1, timeout=10_000)
        await expect(count).to_contain_text(re.compile(r"^\s*1 events shown"))
        for other in "abcd".replace(wanted, ""):
            await expect(table.get_by_text(f"kind-{other}-{tag}", exact=True).filter(visible=True)).to_have_count(0)
        await shoot(page, screenshot_dir, f"events-filter-{field}")


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


async def test_the_fleet_table_follows_agents_spawned_and_killed_elsewhere(page, panel_api, screenshot_dir):
    await open_tab(page, "Fleet")
    table = page.locator("#fleet-table")
    await expect(page.locator("#fleet-summary")).to_contain_text(f"cap {FLEET_CAP}", timeout=60_000)
    async with httpx.AsyncClient(base_url=panel_api, timeout=180) as http:
        spawned = (await http.post("/fleet/agents", json={"kind": "outsider", "capabilities": ["probe"],
                                                          "hotpath": False})).json()
        agent_id = spawned["agent_id"]
        try:
            # Spawned by another client: the table shows it at its next refresh (every 1.5 s),
            # with its heartbeat age, without a click.
            row = table.get_by_text(agent_id, exact=True).filter(visible=True)
            await expect(row).to_have_count(1, timeout=10_000)
            await expect(table.get_by_text("outsider", exact=True).filter(visible=True)).to_have_count(1)
            await expect(table).to_contain_text(re.compile(r"\d+\.\d s ago"))
            await shoot(page, screenshot_dir, "fleet-refreshed")
        finally:
            (await http.delete(f"/fleet/agents/{agent_id}", params={"force": "true"})).raise_for_status()
    await expect(table.get_by_text(agent_id, exact=True).filter(visible=True)).to_have_count(0, timeout=10_000)


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
    # Highlighted as Python (the editor's language follows the file's extension).
    await expect(page.locator("#ws-editor .cm-content")).to_have_attribute("data-language", "python")
    await _fill(page, "#ws-command", "python3 panel/count.py")
    await page.locator("#ws-run").click()
    output = page.locator("#ws-output")
    # Streamed: the first line is shown while the command still runs (no exit status yet).
    await expect(output).to_contain_text("tick 0", timeout=LONG)
    assert "[exit" not in await output.inner_text()
    await expect(output).to_contain_text("tick 2", timeout=LONG)
    await expect(output).to_contain_text("[exit 0]")
    await shoot(page, screenshot_dir, "workspace-exec")


async def _save_file(page, path: str, text: str) -> None:
    await _fill(page, "#ws-path", path)
    await page.keyboard.press("Escape")
    await _type_code(page, "#ws-editor", text)
    await page.locator("#ws-save").click()
    await expect(page.locator("#ws-note")).to_contain_text(f"saved {path}", timeout=LONG)


async def test_a_snapshot_is_taken_diffed_and_restored(page, screenshot_dir):
    await open_tab(page, "Workspaces")
    await page.locator("#ws-create").click()
    await _save_file(page, "snap/notes.txt", "first version\n")
    await _save_file(page, "snap/old.txt", "to be removed\n")
    await _fill(page, "#ws-snapshot-label", "before-change")
    await page.locator("#ws-snapshot-take").click()
    await expect(page.locator("#ws-note")).to_contain_text("taken", timeout=LONG)
    # One file changed, one added, one removed.
    await _save_file(page, "snap/notes.txt", "second version\n")
    await _save_file(page, "snap/new.txt", "added after\n")
    await _fill(page, "#ws-path", "snap/old.txt")
    await page.keyboard.press("Escape")
    await page.locator("#ws-delete").click()
    await expect(page.locator("#ws-note")).to_contain_text("deleted snap/old.txt", timeout=LONG)
    await expect(page.locator("#ws-tree")).not_to_contain_text("old.txt")
    await page.locator("#ws-snapshot-diff").click()
    diff = page.locator("#ws-diff")
    await expect(diff).to_contain_text("modified (1)", timeout=LONG)
    await expect(diff).to_contain_text("added (1)")
    await expect(diff).to_contain_text("removed (1)")
    # Each path under its own heading, marked + added, - removed, ~ modified.
    items = sorted(t.strip() for t in await diff.locator("li").all_inner_texts())
    assert items == ["+ snap/new.txt", "- snap/old.txt", "~ snap/notes.txt"], items
    text = await diff.inner_text()
    assert text.index("added") < text.index("+ snap/new.txt") < text.index("removed") \
        < text.index("- snap/old.txt") < text.index("modified") < text.index("~ snap/notes.txt"), text
    await shoot(page, screenshot_dir, "workspace-diff")
    await page.locator("#ws-snapshot-restore").click()
    await expect(page.locator("#ws-note")).to_contain_text("restored", timeout=LONG)
    # Restored: the change undone, the added file gone, the removed one back.
    tree = page.locator("#ws-tree")
    await expect(tree).to_contain_text("old.txt", timeout=LONG)
    await expect(tree).not_to_contain_text("new.txt")
    await _fill(page, "#ws-path", "snap/notes.txt")
    await page.keyboard.press("Escape")
    await page.locator("#ws-open").click()
    await expect(page.locator("#ws-editor")).to_contain_text("first version", timeout=LONG)
    await expect(page.locator("#ws-editor")).not_to_contain_text("second version")
    await _fill(page, "#ws-path", "snap/old.txt")
    await page.keyboard.press("Escape")
    await page.locator("#ws-open").click()
    await expect(page.locator("#ws-editor")).to_contain_text("to be removed", timeout=LONG)


async def test_every_tab_renders_without_an_error(page, screenshot_dir):
    # The chat offers every assistant: the orchestrator, the agent graph (and user graphs).
    await expect(page.locator("#chat-assistant input")).to_have_value(re.compile("orchestrator"), timeout=60_000)
    await page.locator("#chat-assistant input").click()
    await expect(page.get_by_role("option", name=re.compile(r"\(agent\)$"))).to_be_visible()
    await page.keyboard.press("Escape")
    for title in TABS:
        await open_tab(page, title)
        # Not "networkidle": the event monitor's live stream keeps a request open.
        await expect(page.get_by_role("tab", name=title, exact=True)).to_have_attribute("aria-selected", "true")
        await shoot(page, screenshot_dir, "tab-" + title.lower().split()[0])
    assert await page.locator(".toast-body.error, [data-testid='toast-body']").count() == 0


async def _spawn(page, kind: str, hotpath: bool = False) -> str:
    await _fill(page, "#fleet-kind", kind)
    box = page.locator("#fleet-hotpath input")
    if await box.is_checked() != hotpath:
        await box.click()
    note = page.locator("#fleet-note")
    before = (await note.inner_text()).split("spawned", 1)[-1].strip() if "spawned" in await note.inner_text() else ""
    await page.locator("#fleet-spawn").click()
    # A new agent's id: not the one an earlier spawn put in the note.
    fresh = rf"spawned (?!{re.escape(before)}\b)\S+" if before else r"spawned \S+"
    await expect(note).to_contain_text(re.compile(fresh), timeout=LONG)
    return (await note.inner_text()).split("spawned", 1)[1].strip()


async def _toast(page, pattern: str) -> None:
    await expect(page.get_by_text(re.compile(pattern)).first).to_be_visible(timeout=60_000)
    await page.keyboard.press("Escape")


async def test_the_fleet_cap_hotpath_and_force_kill(page, screenshot_dir):
    await open_tab(page, "Fleet")
    summary, table = page.locator("#fleet-summary"), page.locator("#fleet-table")
    await expect(summary).to_contain_text(f"cap {FLEET_CAP}", timeout=60_000)
    hot = await _spawn(page, "guard", hotpath=True)
    plain = await _spawn(page, "helper")
    await expect(summary).to_contain_text(f"alive {FLEET_CAP}", timeout=30_000)
    await expect(summary).to_contain_text(f"hotpath {hot}")
    # At the cap a spawn is refused with the API's reason, shown as a one-line error.
    await _fill(page, "#fleet-kind", "one-too-many")
    await page.locator("#fleet-spawn").click()
    await _toast(page, f"409: .*cap.*{FLEET_CAP}")
    # A hotpath agent is not killed without force.
    await _fill(page, "#fleet-agent-id", hot)
    await page.locator("#fleet-kill").click()
    await _toast(page, "409: .*hotpath")
    await expect(table.get_by_text(hot).filter(visible=True).first).to_be_visible()
    await shoot(page, screenshot_dir, "fleet-cap-hotpath")
    # Hotpath toggled on the other agent, then that one too needs force.
    await _fill(page, "#fleet-agent-id", plain)
    await page.locator("#fleet-toggle-hotpath").click()
    await expect(page.locator("#fleet-note")).to_contain_text(f"hotpath on for {plain}", timeout=LONG)
    await page.locator("#fleet-force input").click()
    for agent_id in (plain, hot):
        await _fill(page, "#fleet-agent-id", agent_id)
        await page.locator("#fleet-kill").click()
        await expect(page.locator("#fleet-note")).to_contain_text(f"killed {agent_id}", timeout=LONG)
        await expect(table.get_by_text(agent_id).filter(visible=True)).to_have_count(0, timeout=30_000)


async def test_workspace_upload_download_processes_and_a_path_escape(page, screenshot_dir, tmp_path):
    await open_tab(page, "Workspaces")
    await page.locator("#ws-create").click()
    await expect(page.locator("#ws-table")).to_contain_text("default", timeout=LONG)
    # Upload a binary file into the folder of the path given, then open it: binary, so a download.
    await _fill(page, "#ws-path", "uploads/placeholder.txt")
    await page.keyboard.press("Enter")
    await page.locator("#ws-path input").blur()  # a typed path counts once the field is left
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    await page.locator("#ws-upload input[type=file]").set_input_files(str(blob))
    await expect(page.locator("#ws-note")).to_contain_text("uploaded uploads/blob.bin", timeout=LONG)
    await expect(page.locator("#ws-tree")).to_contain_text("blob.bin")
    await _fill(page, "#ws-path", "uploads/blob.bin")
    await page.keyboard.press("Escape")
    await page.locator("#ws-open").click()
    await expect(page.locator("#ws-note")).to_contain_text("binary file (2.0 KiB): download it", timeout=LONG)
    link = page.locator("#ws-download a").first
    await expect(link).to_be_visible()
    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    assert (await download.path()).read_bytes() == blob.read_bytes()
    # A background process: listed while it runs, stopped from the tab.
    await _fill(page, "#ws-command", "sleep 300")
    await page.locator("#ws-start-process").click()
    processes = page.locator("#ws-processes")
    await expect(processes.get_by_text("sleep 300").filter(visible=True).first).to_be_visible(timeout=LONG)
    await expect(processes.get_by_text("running").filter(visible=True).first).to_be_visible()
    await expect(page.locator("#ws-pid textarea, #ws-pid input").first).not_to_have_value("")
    await page.locator("#ws-stop-process").click()
    await expect(processes.get_by_text("running").filter(visible=True)).to_have_count(0, timeout=LONG)
    await shoot(page, screenshot_dir, "workspace-processes")
    # A path out of the workspace is refused with a readable reason.
    await _fill(page, "#ws-path", "../../etc/passwd")
    await page.keyboard.press("Escape")
    await page.locator("#ws-open").click()
    await _toast(page, r"4\d\d: .*(outside|escape|not allowed|invalid)")


async def test_the_settings_show_the_model_and_status_and_save_guardrails_and_budgets(page, panel_api, screenshot_dir):
    async def stored() -> dict:
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            return (await http.get("/system/guardrails")).json()

    await open_tab(page, "Settings")
    model, note = page.locator("#settings-model"), page.locator("#settings-note")
    await expect(model).to_contain_text("scripted", timeout=60_000)
    await expect(model).to_contain_text(re.compile("postgres", re.I))
    await expect(model).to_contain_text(re.compile("docker", re.I))
    await expect(note).to_contain_text("Loaded", timeout=60_000)
    iterations = page.locator("#settings-max_iterations input")
    thread_tokens = page.locator("#settings-budget_thread_tokens input")
    task_cost = page.locator("#settings-budget_task_cost_usd input")
    await expect(iterations).not_to_have_value("")
    await iterations.fill("37")
    await thread_tokens.fill("50000")
    await task_cost.fill("0.5")
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text("✓ Saved", timeout=60_000)
    await expect(note).to_contain_text("budget_thread_tokens=50000")
    rails = await stored()
    assert (rails["max_iterations"], rails["budget_thread_tokens"], rails["budget_task_cost_usd"]) == (37, 50000, 0.5)
    # Reload reads them back; its note (not the fields, which hold what was typed) says it is done.
    await page.locator("#settings-reload").click()
    await expect(note).to_contain_text("Loaded: last saved", timeout=60_000)
    await expect(iterations).to_have_value("37")
    await expect(thread_tokens).to_have_value("50000")
    await shoot(page, screenshot_dir, "settings-budgets")
    # A budget left blank is no limit.
    await thread_tokens.fill("")
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text("budget_thread_tokens=no limit", timeout=60_000)
    assert (await stored())["budget_thread_tokens"] is None
    # Refusals stay readable under the form (not only in a toast) and change nothing.
    await iterations.fill("0")
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text(re.compile(r"✗ Not saved: 422: .*max_iterations"), timeout=60_000)
    await iterations.fill("37")
    await task_cost.fill("-1")
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text(re.compile(r"✗ Not saved: 422: .*budget_task_cost_usd"), timeout=60_000)
    await shoot(page, screenshot_dir, "settings-refused")
    rails = await stored()
    assert (rails["max_iterations"], rails["budget_task_cost_usd"]) == (37, 0.5)
    await task_cost.fill("")
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text("budget_task_cost_usd=no limit", timeout=60_000)
    assert (await stored())["budget_task_cost_usd"] is None


async def _save_and_read_back(page, field, value: str, saved: str) -> None:
    """Type ``value`` in a Settings field, save, reload: the note says ``saved``, the field keeps it."""
    note = page.locator("#settings-note")
    await open_tab(page, "Settings")
    await field.fill(value)
    await page.locator("#settings-save").click()
    await expect(note).to_contain_text(saved, timeout=60_000)
    await page.locator("#settings-reload").click()
    await expect(note).to_contain_text("Loaded: last saved", timeout=60_000)
    await expect(field).to_have_value(value)


async def _chat_until_card(page, text: str):
    """Send ``text`` on a new thread of the Chat tab; the interrupt card it halts on."""
    await open_tab(page, "Chat")
    await page.locator("#chat-new-thread").click()
    await expect(page.locator("#chat-thread input")).to_have_value(re.compile(r"… idle\b"), timeout=60_000)
    card = page.locator("#interrupt-card").first
    await expect(card).to_be_hidden(timeout=60_000)
    await page.locator("#chat-input textarea").fill(text)
    await page.locator("#chat-send").click()
    await expect(card).to_be_visible(timeout=LONG)
    return card


async def test_the_guardrails_hours_and_agents_per_thread_are_saved_and_halt_a_thread(page, panel_api, screenshot_dir):
    """Hours and agents per thread saved from the Settings tab, read back by the tab and the API,
    and obeyed by the next chat run: a spawn over the agents allowed halts on a guardrail card,
    and so does a thread that runs past the hours allowed."""
    async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
        before = (await http.get("/system/guardrails")).json()
    await open_tab(page, "Settings")
    await expect(page.locator("#settings-note")).to_contain_text("Loaded", timeout=60_000)
    hours, agents = page.locator("#settings-max_hours input"), page.locator("#settings-max_agents_per_thread input")
    try:
        await _save_and_read_back(page, agents, "0", "✓ Saved: max_agents_per_thread=0")
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            assert (await http.get("/system/guardrails")).json()["max_agents_per_thread"] == 0
        card = await _chat_until_card(page, "spawn a coder agent")
        await expect(card).to_contain_text("would exceed 0 agents")
        await shoot(page, screenshot_dir, "settings-agents-guardrail")
        # A thread may run 0.0005 h (1.8 s) without human input: a command run again and again
        # halts on its card soon after.
        await _save_and_read_back(page, agents, str(before["max_agents_per_thread"]), "✓ Saved: max_agents_per_thread")
        await _save_and_read_back(page, hours, "0.0005", "✓ Saved: max_hours=0.0005")
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            assert (await http.get("/system/guardrails")).json()["max_hours"] == 0.0005
        card = await _chat_until_card(page, "keep running `sleep 1`")
        await expect(card).to_contain_text(re.compile(r"without human input \(limit 2s\)"))
        await shoot(page, screenshot_dir, "settings-hours-guardrail")
    finally:
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            (await http.patch("/system/guardrails", json={
                name: before[name] for name in ("max_iterations", "max_hours", "max_agents_per_thread")}
            )).raise_for_status()


async def test_the_event_monitor_pages_older_events_and_pauses_and_resumes(page, system, panel_api, screenshot_dir):
    sender = f"pager-{uuid.uuid4().hex[:6]}"
    for n in range(120):
        await system.events.publish.remote(Envelope(sender=sender, recipient="nobody", kind="note", payload={"n": n}))

    async def all_in_history() -> bool:
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            first = (await http.get("/events", params={"sender": sender, "limit": 200})).json()
        return len(views.events_page(first)[0]) == 120

    await eventually(all_in_history, timeout=60, what="the 120 events in the history")
    await open_tab(page, "Event monitor")
    await _fill(page, "#events-sender", sender)
    await page.locator("#events-apply").click()
    count = page.locator("#events-count")
    await expect(count).to_contain_text("100 events shown (older pages remain)", timeout=60_000)
    await page.locator("#events-older").click()
    await expect(count).to_contain_text("120 events shown", timeout=60_000)
    # Live: an event shows at once; paused: the next does not; Apply resumes from the last seen.
    await system.events.publish.remote(Envelope(sender=sender, recipient="nobody", kind="live", payload={"n": 120}))
    await expect(count).to_contain_text("121 events shown", timeout=10_000)
    await page.locator("#events-pause").click()
    await expect(page.locator("#events-note")).to_contain_text("paused", timeout=30_000)
    await system.events.publish.remote(Envelope(sender=sender, recipient="nobody", kind="missed", payload={"n": 121}))

    async def missed_in_history() -> bool:
        async with httpx.AsyncClient(base_url=panel_api, timeout=60) as http:
            found = (await http.get("/events", params={"sender": sender, "kind": "missed"})).json()
        return bool(views.events_page(found)[0])

    await eventually(missed_in_history, timeout=30, what="the event sent while paused in the history")
    await expect(page.locator("#events-table").get_by_text("missed").filter(visible=True)).to_have_count(0)
    assert "121 events shown" in await count.inner_text()
    await page.locator("#events-apply").click()
    await expect(page.locator("#events-note")).to_contain_text("live", timeout=30_000)
    # Resumed, not reloaded: the older pages stay and the event sent while paused is added.
    await expect(count).to_contain_text("122 events shown", timeout=30_000)
    await expect(page.locator("#events-table").get_by_text("missed").filter(visible=True).first).to_be_visible()
    await shoot(page, screenshot_dir, "events-paged-paused")
