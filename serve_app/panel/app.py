"""The control panel's Gradio Blocks app, mounted at ``/ui`` on the API's FastAPI app or served
on its own (``quadracode-ray panel --url URL``)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from fastapi import FastAPI

from serve_app.panel.client import PanelError
from serve_app.panel.ui_chat import build_chat_tab
from serve_app.panel.ui_common import MOUNT_PATH, PanelContext, access_note
from serve_app.panel.ui_threads import build_threads_tab

TITLE = "Quadracode-Ray control panel"
CSS = "#chat-log {min-height: 420px} footer {display: none !important} .qr-hidden {display: none !important}"


def build_panel(ctx: PanelContext) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as panel:
        with gr.Row():
            gr.Markdown(f"## {TITLE}")
            key_box = gr.Textbox(label="API key (when the API asks for one)", type="password", scale=1,
                                 elem_id="api-key")
            use_key = gr.Button("Use key", scale=0, min_width=90, elem_id="api-key-use")
        key_status = gr.Markdown(elem_id="api-key-status")
        key = gr.State("")
        access = gr.State(False)
        loads: list[tuple[Any, list, list]] = []
        with gr.Tabs():
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                loads.append(build_chat_tab(ctx, key)["load"])
            with gr.Tab("Threads and runs", id="threads", elem_id="tab-threads"):
                loads.append(build_threads_tab(ctx, key)["load"])
            for name, builder in _operator_tabs():
                with gr.Tab(name, id=name.lower().split()[0], elem_id=f"tab-{name.lower().split()[0]}"):
                    built = builder(ctx, key)
                    if built.get("load"):
                        loads.append(built["load"])

        async def check_access(key_value: str, request: gr.Request):
            """Whether the API takes this key (or none): one line under the key field."""
            try:
                await ctx.client(request, key_value).search_threads(limit=1)
            except PanelError as exc:
                return access_note(exc.status, str(exc), bool(key_value)), False
            return access_note(None, "", bool(key_value)), True

        def gate(ok: bool) -> None:
            if not ok:  # said under the key field already: no toast per tab
                raise gr.Error("no access to the API", visible=False, print_exception=False)

        # Tabs load what they show once the page is up and again when a key is given, only when
        # the API takes the key (else the line under the key field says why, once); a failure of
        # one tab (an API that lacks a route) is an error toast, and the other tabs still load.
        on_load = panel.load(check_access, [key], [key_status, access]).success(gate, access, None)
        on_key = use_key.click(lambda value: (value or "").strip(), key_box, key).then(
            check_access, [key], [key_status, access]).success(gate, access, None)
        for fn, inputs, outputs in loads:
            on_load.success(fn, inputs, outputs)
            on_key.success(fn, inputs, outputs)
    return panel


def _operator_tabs() -> list[tuple[str, Any]]:
    from serve_app.panel import ui_operator

    return ui_operator.TABS


def mount_panel(app: FastAPI, api_url: str | None = None, path: str = MOUNT_PATH) -> FastAPI:
    """Mount the panel at ``path`` on ``app``; with no ``api_url`` it calls the API at the address
    the browser used (the panel is a client of the app it is mounted on, over HTTP)."""
    panel = build_panel(PanelContext(api_url))
    panel.queue(default_concurrency_limit=None)
    return gr.mount_gradio_app(app, panel, path=path, ssr_mode=False, show_error=True, css=CSS,
                               footer_links=[])
