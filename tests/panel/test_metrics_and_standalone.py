"""In Chromium against the whole system: the Metrics tab's charts fill with real figures sampled
from ``/metrics`` while the system works (API runs, LLM tokens, agents alive, envelopes, sandbox
exec latency), read back from the plots' own SVG (Vega labels every point it draws); and the
panel served alone by ``quadracode-ray panel --url`` works against that API from outside."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.e2e.conftest import eventually
from tests.panel.conftest import open_tab, shoot
from tests.polling import eventually_sync

LONG = 180_000
# Vega's label of one drawn point: "seconds (0 = latest sample): −3; runs/s: 0.67; series: orchestrator".
POINT = re.compile(r"seconds \(0 = latest sample\): [^;]+; [^:]+: (?P<value>-?[\d.]+(?:e[-+]?\d+)?); series: (?P<series>.+)$")


async def chart_points(page, metric: str) -> list[tuple[str, float]]:
    """(line, value) of every point the chart of ``metric`` draws."""
    labels = await page.locator(f"#metrics-{metric} svg [aria-label]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('aria-label'))")
    found = []
    for label in labels:
        if match := POINT.match(label.replace("\u2212", "-")):
            found.append((match["series"], float(match["value"])))
    return found


async def test_the_metrics_charts_show_the_systems_figures(page, panel_api, screenshot_dir):
    from langgraph_sdk import get_client

    await open_tab(page, "Metrics")
    # Two samples make the first points; the system works only after, so its rates are above 0.
    await expect(page.locator("#metrics-note")).to_contain_text(re.compile(r"\d+ samples over"), timeout=60_000)
    client = get_client(url=panel_api, timeout=120)
    async with httpx.AsyncClient(base_url=panel_api, timeout=180) as http:
        (await http.post("/fleet/agents", json={"kind": "metrics-probe", "capabilities": [], "hotpath": False})
         ).raise_for_status()
        for _ in range(2):
            thread = await client.threads.create()
            await client.runs.wait(thread["thread_id"], "orchestrator",
                                   input={"messages": [{"role": "user", "content": "list agents"}]})
        (await http.post("/workspaces", json={"workspace_id": "default"})).raise_for_status()
        for _ in range(2):
            (await http.post("/workspaces/default/exec", json={"command": "echo metrics"})).raise_for_status()

    wanted = {"api_runs_total": "orchestrator", "api_run_seconds": "orchestrator", "llm_tokens_total": None,
              "agents_alive": None, "envelopes_total": "all", "sandbox_operation_seconds": "all"}

    async def every_chart_has_figures() -> dict | None:
        seen = {metric: await chart_points(page, metric) for metric in wanted}
        missing = [metric for metric, line in wanted.items()
                   if not any(value > 0 and (line is None or series == line) for series, value in seen[metric])]
        return None if missing else seen

    seen = await eventually(every_chart_has_figures, timeout=120, what="a figure above 0 on every chart")
    assert max(value for _, value in seen["agents_alive"]) >= 1
    # Every point is drawn whole: none reaches past the plot's frame (which clips what does).
    for metric in wanted:
        outside = await page.locator(f"#metrics-{metric} svg").evaluate("""svg => {
            const frame = svg.querySelector('path.background').getBoundingClientRect();
            return [...svg.querySelectorAll('[aria-label^="seconds"]')].map(p => [p.getAttribute('aria-label'),
                p.getBoundingClientRect()]).filter(([, r]) => r.top < frame.top - 0.5 || r.bottom > frame.bottom + 0.5
                || r.left < frame.left - 0.5 || r.right > frame.right + 0.5).map(([label]) => label)}""")
        assert not outside, (metric, outside)
    latest = page.locator("#metrics-latest")
    await expect(latest.get_by_text("orchestrator").filter(visible=True).first).to_be_visible()
    await expect(page.locator("#metrics-note")).to_contain_text("6 of 6 charts have figures")
    await shoot(page, screenshot_dir, "metrics")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_standalone_panel_works_against_a_remote_api(browser, panel_api, screenshot_dir, tmp_path):
    from langgraph_sdk import get_client

    thread = await get_client(url=panel_api).threads.create(metadata={"seen_by": "standalone"})
    port = _free_port()
    cli = Path(sys.executable).with_name("quadracode-ray")
    output = tmp_path / "panel.log"
    process = subprocess.Popen([str(cli), "panel", "--url", panel_api, "--port", str(port)],
                               stdout=output.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        url = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            assert process.poll() is None, output.read_text()
            try:
                return httpx.get(f"{url}/ui/", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        eventually_sync(serving, timeout=120, interval=0.5, what="the standalone panel to serve /ui/")
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        try:
            await page.goto(f"{url}/", timeout=120_000)  # / redirects to the panel
            await expect(page.locator("#chat-assistant input")).to_have_value(re.compile("orchestrator"),
                                                                              timeout=120_000)
            await open_tab(page, "Threads and runs")
            await page.locator("#threads-search").click()
            await expect(page.locator("#threads-table").get_by_text(thread["thread_id"]).filter(visible=True).first
                         ).to_be_visible(timeout=60_000)
            await shoot(page, screenshot_dir, "standalone-panel")
        finally:
            await context.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
