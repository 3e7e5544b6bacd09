"""The Settings tab: guardrails (max iterations, hours, agents per thread) and the token/cost
budgets (per thread and per delegated task), the model in use, the system's status (nodes,
actors, Postgres, Docker), and the emergency stop of everything."""

from __future__ import annotations

from typing import Any

import gradio as gr

from serve_app.panel import settings_logic, views
from serve_app.panel.client import PanelError
from serve_app.panel.settings_logic import FIELDS
from serve_app.panel.ui_common import PanelContext, guarded


def build_settings_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    gr.Markdown("### Guardrails and budgets (used by every run from its next check, no restart)")
    inputs: list[gr.Number] = []
    for group in (FIELDS[:3], FIELDS[3:]):
        with gr.Row():
            inputs += [gr.Number(label=f.label, step=f.step, precision=0 if f.integer else None,
                                 elem_id=f"settings-{f.name}") for f in group]
    with gr.Row():
        reload = gr.Button("Reload", elem_id="settings-reload")
        save = gr.Button("Save guardrails and budgets", variant="primary", elem_id="settings-save")
    # Persistent, unlike a toast: the outcome of the last load or save, a refusal's reason included.
    note = gr.Markdown(elem_id="settings-note")
    loaded = gr.State(None)  # the values last loaded or saved: a Save sends what differs
    model = gr.Markdown(elem_id="settings-model")
    with gr.Accordion("Raw status (JSON)", open=False):
        status = gr.JSON(label="System status", elem_id="settings-status")
    with gr.Row():
        kill_agents = gr.Checkbox(label="Also kill every agent", elem_id="settings-kill-agents")
        stop_all = gr.Button("Emergency stop: every thread", variant="stop", elem_id="settings-stop-all")
    stop_note = gr.Markdown(elem_id="settings-stop-note")

    @guarded
    async def load(key_value: str, request: gr.Request):
        client = ctx.client(request, key_value)
        rails = await client.guardrails()
        state = await client.system_status()
        return (*settings_logic.field_values(rails), views.status_markdown(state), state,
                settings_logic.loaded_note(rails), rails)

    async def store(key_value: str, last: dict | None, shown: list[Any], request: gr.Request):
        changed = settings_logic.changes(last, shown)
        if not changed:
            return (*[gr.skip()] * len(FIELDS), "Nothing to save: no field differs from the values loaded.",
                    gr.skip())
        try:
            saved = await ctx.client(request, key_value).set_guardrails(changed)
        except PanelError as exc:
            gr.Warning(str(exc), title="Not saved")
            return (*[gr.skip()] * len(FIELDS), settings_logic.failed_note(str(exc)), gr.skip())
        return (*settings_logic.field_values(saved), settings_logic.saved_note(changed), saved)

    async def store_form(key_value: str, last: dict | None, a: Any, b: Any, c: Any, d: Any, e: Any, f: Any,
                         g: Any, request: gr.Request):
        return await store(key_value, last, [a, b, c, d, e, f, g], request)

    @guarded
    async def stop_everything(key_value: str, kill: bool, request: gr.Request):
        result = await ctx.client(request, key_value).stop_system(kill_agents=kill) or {}
        return (f"Stopped {len(result.get('threads_stopped') or [])} thread(s), cancelled "
                f"{len(result.get('tasks_cancelled') or [])} task(s), killed {len(result.get('agents_killed') or [])} "
                f"agent(s)" + (f"; could not stop: {'; '.join(result['errors'])}" if result.get("errors") else ""))

    outputs = [*inputs, model, status, note, loaded]
    reload.click(load, [key], outputs)
    save.click(store_form, [key, loaded, *inputs], [*inputs, note, loaded])
    stop_all.click(stop_everything, [key, kill_agents], stop_note)
    return {"load": (load, [key], outputs)}
