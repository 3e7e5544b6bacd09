"""The control panel at ``/ui`` of the API's own app, built in the background once the replica serves.

Importing Gradio and building the panel's Blocks take seconds of CPU; done while the replica
starts, they lay on the path of every deploy (``quadracode-ray up`` waits for the replica). Here
the replica starts without them, the build runs in a worker thread once the API's run path is
ready (serve_app/asgi.py), and a request to ``/ui`` that comes before the build is done starts it
if need be and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI

log = logging.getLogger(__name__)

MOUNT_PATH = "/ui"  # serve_app.panel.ui_common.MOUNT_PATH, not imported from there: it imports Gradio


def _build_gradio_app(path: str) -> tuple[FastAPI, Any]:
    """The panel mounted on an app of its own: Gradio puts its startup events (its queue) into the
    lifespan of the app it is mounted on, which we run ourselves (see LazyPanel.start)."""
    from serve_app.panel.app import mount_panel

    holder = FastAPI()
    mount_panel(holder, path=path)
    return holder, holder.routes[-1].app  # the Gradio app, as mount_gradio_app mounted it at `path`


class LazyPanel:
    """An ASGI app for ``/ui`` that hands each request to the Gradio app once it is built."""

    def __init__(self, path: str = MOUNT_PATH):
        self.path = path
        self._gradio: Any = None
        self._build: asyncio.Task | None = None
        self._lifespans = contextlib.AsyncExitStack()

    def start(self) -> asyncio.Task:
        """Begin the build (idempotent); called once the API's run path is ready, or by a first request."""
        if self._build is None:
            self._build = asyncio.get_running_loop().create_task(self._built())
            self._build.add_done_callback(_log_failure)
        return self._build

    async def _built(self) -> None:
        holder, gradio_app = await asyncio.to_thread(_build_gradio_app, self.path)
        # Gradio's own startup (its event queue) runs on this event loop, as it would at mount time.
        await self._lifespans.enter_async_context(holder.router.lifespan_context(holder))
        self._gradio = gradio_app

    async def close(self) -> None:
        if self._build is not None and not self._build.done():
            self._build.cancel()
        await self._lifespans.aclose()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._gradio is None:
            await asyncio.shield(self.start())  # a failed build fails this request (500), logged once
        await self._gradio(scope, receive, send)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("building the control panel failed; /ui answers 500", exc_info=task.exception())


def mount_panel_lazily(app: FastAPI, path: str = MOUNT_PATH) -> LazyPanel:
    panel = LazyPanel(path)
    app.state.panel = panel
    app.mount(path, panel)
    return panel
