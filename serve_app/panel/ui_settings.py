"""The Settings tab: guardrails (max iterations, hours, agents per thread), the model in use, the
system's status (nodes, actors, Postgres, Docker), and the emergency stop of everything."""

from __future__ import annotations

from typing import Any

import gradio as gr

from serve_app.panel import views
from serve_app.panel.ui_common import PanelContext, guarded

GUARDRAIL_FIELDS = [("max_iterations", "Max iterations per run", 1), ("max_hours", "Max hours per run", 0.1),
                    ("max_agents_per_thread", "Max agents per thread", 1)]


def build_settings_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    gr.Markdown("### Guardrails (effective for new runs, no restart)")
    with gr.Row():
        fields = [gr.Number(label=label, step=step, elem_id=f"settings-{name}") for name, label, step in GUARDRAIL_FIELDS]
    with gr.Row():
        reload = gr.Button("Reload", elem_id="settings-reload")
        save = gr.Button("Save guardrails", variant="primary", elem_id="settings-save")
    note = gr.Markdown(elem_id="settings-note")
    model = gr.Markdown(elem_id="settings-model")
    with gr.Accordion("Raw status (JSON)", open=False):
        status = gr.JSON(label="System status", elem_id="settings-status")
    with gr.Row():
        kill_agents = gr.Checkbox(label="Also kill every agent", elem_id="settings-kill-agents")
        stop_all = gr.Button("Emergency stop: every thread", variant="stop", elem_id="settings-stop-all")

    @guarded
    async def load(key_value: str, request: gr.Request):
        client = ctx.client(request, key_value)
        rails = await client.guardrails()
        state = await client.system_status()
        return (*[rails.get(name) for name, _, _ in GUARDRAIL_FIELDS], views.status_markdown(state), state)

    @guarded
    async def store(key_value: str, *values: Any):
        request = values[-1]
        changes = {name: value for (name, _, _), value in zip(GUARDRAIL_FIELDS, values[:-1], strict=True)
                   if value is not None}
        saved = await ctx.client(request, key_value).set_guardrails(changes)
        return "✓ saved: " + ", ".join(f"{k}={v}" for k, v in (saved or changes).items())

    @guarded
    async def stop_everything(key_value: str, kill: bool, request: gr.Request):
        result = await ctx.client(request, key_value).stop_system(kill_agents=kill) or {}
        return (f"Stopped {len(result.get('threads_stopped') or [])} thread(s), cancelled "
                f"{len(result.get('tasks_cancelled') or [])} task(s), killed {len(result.get('agents_killed') or [])} "
                f"agent(s)" + (f"; could not stop: {'; '.join(result['errors'])}" if result.get("errors") else ""))

    outputs = [*fields, model, status]
    reload.click(load, [key], outputs)

    async def store_with_request(key_value: str, a: Any, b: Any, c: Any, request: gr.Request):
        return await store(key_value, a, b, c, request)

    save.click(store_with_request, [key, *fields], note)
    stop_all.click(stop_everything, [key, kill_agents], note)
    return {"load": (load, [key], outputs)}
