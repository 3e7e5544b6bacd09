"""The Fleet tab: the registry as a table refreshed every 1.5 s; spawn, kill (force for a
hotpath agent), toggle hotpath; the cap and its usage."""

from __future__ import annotations

from typing import Any

import gradio as gr

from serve_app.panel import views
from serve_app.panel.ui_common import PanelContext, guarded

REFRESH_S = 1.5


def build_fleet_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    summary = gr.Markdown(elem_id="fleet-summary")
    table = gr.Dataframe(headers=views.FLEET_HEADERS, label="Agents (click one to pick it)", interactive=False,
                         elem_id="fleet-table", value=[])
    with gr.Row():
        with gr.Column():
            kind = gr.Textbox(label="Kind", value="coder", elem_id="fleet-kind")
            capabilities = gr.Textbox(label="Capabilities (comma-separated)", elem_id="fleet-capabilities")
            hotpath = gr.Checkbox(label="Hotpath (not killed without force)", elem_id="fleet-hotpath")
            spawn = gr.Button("Spawn", variant="primary", elem_id="fleet-spawn")
        with gr.Column():
            agent = gr.Textbox(label="Agent", elem_id="fleet-agent-id")
            force = gr.Checkbox(label="Force (needed for a hotpath agent)", elem_id="fleet-force")
            with gr.Row():
                kill = gr.Button("Kill", variant="stop", elem_id="fleet-kill")
                toggle = gr.Button("Toggle hotpath", elem_id="fleet-toggle-hotpath")
    note = gr.Markdown(elem_id="fleet-note")
    live = gr.Checkbox(label=f"Refresh every {REFRESH_S} s", value=True, elem_id="fleet-live")
    timer = gr.Timer(REFRESH_S)

    @guarded
    async def refresh(key_value: str, request: gr.Request):
        client = ctx.client(request, key_value)
        agents = await client.fleet_agents()
        fleet = await client.fleet()
        return views.fleet_summary(fleet), views.fleet_rows(agents)

    async def tick(key_value: str, enabled: bool, request: gr.Request):
        if not enabled:
            return gr.update(), gr.update()
        try:
            return await refresh(key_value, request)
        except gr.Error as exc:  # a timed refresh reports in place instead of a toast every 1.5 s
            return f"! {exc.message}", gr.update()

    @guarded
    async def do_spawn(key_value: str, kind_value: str, capabilities_text: str, hot: bool, request: gr.Request):
        spawned = await ctx.client(request, key_value).spawn(kind_value.strip(),
                                                            views.parse_capabilities(capabilities_text), hot)
        return f"spawned {spawned.get('agent_id', spawned)}", *(await refresh(key_value, request))

    @guarded
    async def do_kill(key_value: str, agent_id: str, force_value: bool, request: gr.Request):
        if not agent_id.strip():
            raise gr.Error("Pick an agent first.")
        await ctx.client(request, key_value).kill(agent_id.strip(), force_value)
        return f"killed {agent_id}", *(await refresh(key_value, request))

    @guarded
    async def do_toggle(key_value: str, agent_id: str, table_value: Any, request: gr.Request):
        if not agent_id.strip():
            raise gr.Error("Pick an agent first.")
        rows = table_value.values.tolist() if hasattr(table_value, "values") else list(table_value or [])
        current = next((row[7] == "yes" for row in rows if row and row[0] == agent_id.strip()), False)
        await ctx.client(request, key_value).set_hotpath(agent_id.strip(), not current)
        return f"hotpath {'on' if not current else 'off'} for {agent_id}", *(await refresh(key_value, request))

    def pick(evt: gr.SelectData):
        values = getattr(evt, "row_value", None) or []
        return str(values[0]) if values else gr.update()

    timer.tick(tick, [key, live], [summary, table], show_progress="hidden")
    table.select(pick, None, agent)
    spawn.click(do_spawn, [key, kind, capabilities, hotpath], [note, summary, table])
    kill.click(do_kill, [key, agent, force], [note, summary, table])
    toggle.click(do_toggle, [key, agent, table], [note, summary, table])
    return {"load": (refresh, [key], [summary, table])}
