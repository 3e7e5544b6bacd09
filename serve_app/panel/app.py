"""The control panel's Gradio Blocks app, mounted at ``/ui`` on the API's FastAPI app or served
on its own (``quadracode-ray panel --url URL``)."""

from __future__ import annotations

from typing import Any

import gradio as gr
from fastapi import FastAPI

from serve_app.panel.ui_chat import build_chat_tab
from serve_app.panel.ui_common import MOUNT_PATH, PanelContext
from serve_app.panel.ui_threads import build_threads_tab

TITLE = "Quadracode-Ray control panel"
CSS = "#chat-log {min-height: 420px} footer {display: none !important}"


def build_panel(ctx: PanelContext) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as panel:
        with gr.Row():
            gr.Markdown(f"## {TITLE}")
            key_box = gr.Textbox(label="API key (when the API asks for one)", type="password", scale=1,
                                 elem_id="api-key")
            use_key = gr.Button("Use key", scale=0, min_width=90, elem_id="api-key-use")
        key = gr.State("")
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
        # Tabs load what they show once the page is up and again when a key is given; a failure
        # (no key yet, an API that is down) is an error toast, and the other tabs still load.
        for fn, inputs, outputs in loads:
            panel.load(fn, inputs, outputs)
            use_key.click(lambda value: value, key_box, key).then(fn, inputs, outputs)
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
