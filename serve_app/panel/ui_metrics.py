"""The Metrics tab: charts over the last minutes, sampled from ``/metrics`` by the panel every
few seconds while the tab's checkbox is on (runs, durations, tokens, agents, envelopes, exec
latency), and a table of each line's latest value."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from serve_app.panel import metrics_logic
from serve_app.panel.client import PanelError
from serve_app.panel.ui_common import PanelContext

SAMPLE_S = 3.0


def build_metrics_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    live = gr.Checkbox(label=f"Sample /metrics every {SAMPLE_S:.0f} s (kept for the last "
                             f"{metrics_logic.KEEP * SAMPLE_S / 60:.0f} minutes)", value=True, elem_id="metrics-live")
    note = gr.Markdown("waiting for the first two samples…", elem_id="metrics-note")
    latest = gr.Dataframe(headers=metrics_logic.LATEST_HEADERS, label="Latest figures", interactive=False,
                          value=[], elem_id="metrics-latest")
    plots = []
    charts = metrics_logic.CHARTS
    for start in range(0, len(charts), 2):
        with gr.Row():
            for chart in charts[start:start + 2]:
                # A mean has points only where something ended: dots, as a lone one would not show
                # as a line.
                kind = gr.ScatterPlot if chart.how == "mean" else gr.LinePlot
                plots.append(kind(x="t", y="value", color="series", label=f"{chart.title} ({chart.unit})",
                                  show_label=True, x_title="seconds (0 = latest sample)", y_title=chart.unit,
                                  y_lim=[0, None], elem_id=f"metrics-{chart.metric}"))
    history = gr.State(None)
    timer = gr.Timer(SAMPLE_S)

    async def sample(key_value: str, enabled: bool, kept: metrics_logic.MetricsHistory | None, request: gr.Request):
        kept = kept or metrics_logic.MetricsHistory()
        if not enabled:
            return kept, gr.skip(), gr.skip(), *[gr.skip() for _ in plots]
        try:
            text = await ctx.client(request, key_value).metrics_text()
        except PanelError as exc:  # a timed sample reports in place instead of a toast every 3 s
            return kept, f"! {exc}", gr.skip(), *[gr.skip() for _ in plots]
        kept.add(time.time(), text)
        series = [kept.series(chart) for chart in charts]
        # A plot keeps the axis kinds of the first frame it draws: it gets none until it has points.
        frames = [gr.update(value=metrics_logic.series_frame(rows), y_lim=[0, metrics_logic.y_top(rows)],
                            x_lim=metrics_logic.x_span(rows))
                  if rows else gr.skip() for rows in series]
        return (kept, metrics_logic.sampling_note(kept, series), metrics_logic.latest_rows(series), *frames)

    timer.tick(sample, [key, live, history], [history, note, latest, *plots], show_progress="hidden")
    return {}
