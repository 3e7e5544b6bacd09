"""The Metrics tab: charts over the last minutes, sampled from ``/metrics`` by the panel every
few seconds while the tab's checkbox is on (runs, durations, tokens, agents, envelopes, exec
latency)."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import pandas as pd

from serve_app.panel import metrics_logic
from serve_app.panel.ui_common import PanelContext, guarded

SAMPLE_S = 3.0


def build_metrics_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    live = gr.Checkbox(label=f"Sample /metrics every {SAMPLE_S:.0f} s", value=True, elem_id="metrics-live")
    note = gr.Markdown(elem_id="metrics-note")
    plots = []
    charts = metrics_logic.CHARTS
    for start in range(0, len(charts), 2):
        with gr.Row():
            for chart in charts[start:start + 2]:
                plots.append(gr.LinePlot(x="time", y="value", color="series", title=f"{chart.title} ({chart.unit})",
                                         height=240, elem_id=f"metrics-{chart.metric}"))
    history = gr.State(None)
    timer = gr.Timer(SAMPLE_S)

    @guarded
    async def sample(key_value: str, enabled: bool, kept: metrics_logic.MetricsHistory | None, request: gr.Request):
        kept = kept or metrics_logic.MetricsHistory()
        if not enabled:
            return kept, gr.update(), *[gr.update() for _ in plots]
        text = await ctx.client(request, key_value).metrics_text()
        kept.add(time.time(), text)
        frames = []
        for chart in charts:
            rows = kept.series(chart)
            frames.append(pd.DataFrame(rows or [], columns=["time", "value", "series"]))
        return kept, f"{len(kept.scrapes)} samples", *frames

    timer.tick(sample, [key, live, history], [history, note, *plots], show_progress="hidden")
    return {}
