"""The control panel in a real browser: Debian's Chromium (scripts/provision-browser.sh) driven
by Playwright, against the whole system (Ray, Postgres, Docker, the scripted model) with the
Serve app and its /ui deployed beside it.

Each test saves screenshots under ``<pytest basetemp>/panel-screenshots`` (printed at the end of
the session), or under ``$QUADRACODE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import undeploy
from tests.e2e.conftest import e2e_settings, system  # noqa: F401  (fixtures of the whole system)

CHROMIUM = os.environ.get("QUADRACODE_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("QUADRACODE_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "panel-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def panel_api(system, serve_http_port: int, request: pytest.FixtureRequest) -> Iterator[str]:  # noqa: F811
    """The Serve app (API + /ui) on the module's fabric, under a route prefix of its own (with the
    module's ``PANEL_API_SETTINGS`` on top, e.g. API keys: the fabric does not need them)."""
    from ray import serve

    from serve_app.app import build_app

    app_name = f"qr-panel-{uuid.uuid4().hex[:6]}"
    settings = system.settings
    overrides = {**settings.model_dump(mode="json", exclude_unset=True),
                 **getattr(request.module, "PANEL_API_SETTINGS", {})}
    serve.run(build_app({"settings": overrides, "fabric": False}), name=app_name, route_prefix=f"/{app_name}",
              blocking=False)
    url = f"http://127.0.0.1:{serve_http_port}/{app_name}"
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}  # /ok needs no key
    yield url
    undeploy(app_name, settings.database_url)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser, panel_api: str, screenshot_dir: Path, request: pytest.FixtureRequest):
    """A fresh page on the panel; a screenshot of it is saved when the test ends (pass or fail)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(30_000)
    await page.goto(f"{panel_api}/ui/", timeout=180_000)
    # The first load of a replica's panel builds its pages: slow on a loaded machine.
    await page.wait_for_selector("#tab-chat", state="attached", timeout=180_000)
    yield page
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    await page.screenshot(path=str(screenshot_dir / f"{name}-end.png"), full_page=True)
    await context.close()


async def shoot(page, screenshot_dir: Path, name: str) -> Path:
    path = screenshot_dir / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def open_tab(page, title: str) -> None:
    await page.get_by_role("tab", name=title).click()
