"""The Metrics tab's sampling: ``/metrics`` scraped every few seconds, turned into time series.

Counters become rates (per second between two samples), histograms a mean duration over the
interval (delta of ``_sum`` over delta of ``_count``), gauges their value. Names are matched
without the ``ray_`` / ``quadracode_`` prefixes, as actors' series come through Ray's agents
(``ray_quadracode_*``) and the replica's directly (``quadracode_*``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def base_name(name: str) -> str:
    for prefix in ("ray_", "quadracode_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def parse(text: str) -> Sample:
    """Every sample of a scrape keyed by (base name with its suffix, sorted labels)."""
    samples: Sample = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("Component", "NodeAddress",
                                                                                       "SessionName", "Version",
                                                                                       "WorkerId", "JobId")))
            key = (base_name(sample.name), labels)
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


@dataclass(frozen=True)
class Chart:
    """One chart: which series, how to turn samples into points, and the label grouping lines."""

    title: str
    metric: str
    how: str  # "rate" | "mean" | "gauge"
    group_by: str = ""
    where: tuple[tuple[str, str], ...] = ()
    unit: str = ""


CHARTS = [
    Chart("API runs per second, by graph", "api_runs_total", "rate", "graph", unit="runs/s"),
    Chart("API run duration, by graph", "api_run_seconds", "mean", "graph", unit="s"),
    Chart("LLM tokens per second, by model", "llm_tokens_total", "rate", "model", unit="tokens/s"),
    Chart("Agents alive", "agents_alive", "gauge", "source", unit="agents"),
    Chart("Envelopes per second", "envelopes_total", "rate", "", unit="envelopes/s"),
    Chart("Sandbox exec latency", "sandbox_operation_seconds", "mean", "", (("operation", "exec"),), unit="s"),
]


def _grouped(sample: Sample, name: str, chart: Chart) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (metric, labels), value in sample.items():
        if metric != name:
            continue
        label_map = dict(labels)
        if any(label_map.get(k) != v for k, v in chart.where):
            continue
        if name.endswith("_bucket"):
            continue
        group = label_map.get(chart.group_by, "all") if chart.group_by else "all"
        totals[group] = totals.get(group, 0.0) + value
    return totals


def points(chart: Chart, before: tuple[float, Sample], after: tuple[float, Sample]) -> dict[str, float]:
    """The chart's value per line between two scrapes (or at the later one, for a gauge)."""
    (t0, s0), (t1, s1) = before, after
    elapsed = max(t1 - t0, 1e-6)
    if chart.how == "gauge":
        return _grouped(s1, chart.metric, chart)
    if chart.how == "rate":
        now, then = _grouped(s1, chart.metric, chart), _grouped(s0, chart.metric, chart)
        return {g: max(v - then.get(g, 0.0), 0.0) / elapsed for g, v in now.items()}
    sums1, sums0 = _grouped(s1, chart.metric + "_sum", chart), _grouped(s0, chart.metric + "_sum", chart)
    counts1, counts0 = _grouped(s1, chart.metric + "_count", chart), _grouped(s0, chart.metric + "_count", chart)
    result = {}
    for group, count in counts1.items():
        runs = count - counts0.get(group, 0.0)
        if runs > 0:
            result[group] = (sums1.get(group, 0.0) - sums0.get(group, 0.0)) / runs
    return result


KEEP = 120  # scrapes kept: 6 minutes at the panel's 3 s


@dataclass
class MetricsHistory:
    """The last ``keep`` scrapes; ``series`` gives each chart's rows for a line plot."""

    keep: int = KEEP
    scrapes: deque = field(default_factory=deque)

    def add(self, at: float, text: str) -> None:
        self.scrapes.append((at, parse(text)))
        while len(self.scrapes) > self.keep:
            self.scrapes.popleft()

    def series(self, chart: Chart) -> list[dict[str, object]]:
        """The chart's points: ``t`` in seconds relative to the latest scrape (0 = now, older
        points negative), ``value``, and ``series`` (the line it belongs to). A counter is only
        exported once something was counted, so a rate line reads 0 where its counter did not
        exist yet (nothing had happened); a mean has no point where nothing ended."""
        rows: list[dict[str, object]] = []
        scrapes = list(self.scrapes)
        if not scrapes:
            return rows
        latest = scrapes[-1][0]
        known: set[str] = set()
        if chart.how == "rate":
            for _, sample in scrapes:
                known |= set(_grouped(sample, chart.metric, chart))
        for before, after in zip(scrapes, scrapes[1:], strict=False):
            values = {**dict.fromkeys(known, 0.0), **points(chart, before, after)}
            for group, value in sorted(values.items()):
                rows.append({"t": round(after[0] - latest, 1), "value": round(value, 6), "series": group})
        return rows


def series_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """A chart's rows as a frame with fixed column types, also when empty: the plot takes its axes'
    kinds from the first frame it is given, and an empty untyped one makes both axes categorical
    (no line is drawn then)."""
    return pd.DataFrame({
        "t": pd.Series([r["t"] for r in rows], dtype="float64"),
        "value": pd.Series([r["value"] for r in rows], dtype="float64"),
        "series": pd.Series([str(r["series"]) for r in rows], dtype="object"),
    })


HEADROOM = 1.1
WINDOWS_S = (30.0, 60.0, 120.0, 240.0)


def y_top(rows: list[dict[str, object]]) -> float:
    """The top of a chart's y axis: a round number at least 10 % above its highest point, so a
    point there is drawn whole (the plot clips its marks at the axis' end, which cut that point in
    half). Round, so it changes only when the figures grow or shrink past a step: a plot given new
    axis limits redraws with its previous data (it shows the next sample's again, a tick late)."""
    highest = max((float(r["value"]) for r in rows), default=0.0)  # type: ignore[arg-type]
    if highest <= 0:
        return 1.0
    wanted = highest * HEADROOM
    scale = 10.0 ** math.floor(math.log10(wanted))
    return next(step * scale for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if step * scale >= wanted)


def x_span(rows: list[dict[str, object]]) -> list[float]:
    """The x axis' ends: a window of seconds (30, 60, 120, … growing as samples are kept) with a
    little room past its ends, where a point would be cut in half as well."""
    oldest = -min((float(r["t"]) for r in rows), default=0.0)  # type: ignore[arg-type]
    window = next((w for w in WINDOWS_S if w >= oldest), None)
    while window is None or window < oldest:
        window = (window or WINDOWS_S[-1]) * 2
    pad = window * 0.02
    return [-window - pad, pad]


LATEST_HEADERS = ["chart", "line", "latest", "unit"]


def latest_rows(series: list[list[dict[str, object]]], charts: list[Chart] | None = None) -> list[list[object]]:
    """Each chart line's value at the latest sample (``series`` in the order of ``charts``); a
    chart with no figures yet has one row saying so."""
    rows: list[list[object]] = []
    for chart, points_of_chart in zip(charts or CHARTS, series, strict=True):
        newest = max((p["t"] for p in points_of_chart), default=None)
        lines = [p for p in points_of_chart if p["t"] == newest]
        if not lines:
            rows.append([chart.title, "", "no figures yet", chart.unit])
        for point in sorted(lines, key=lambda p: str(p["series"])):
            rows.append([chart.title, str(point["series"]), f"{float(point['value']):.4g}", chart.unit])
    return rows


def sampling_note(history: MetricsHistory, series: list[list[dict[str, object]]]) -> str:
    """One line above the charts: how much was sampled and how many charts have figures."""
    scrapes = list(history.scrapes)
    if len(scrapes) < 2:
        return "waiting for the first two samples…"
    span = scrapes[-1][0] - scrapes[0][0]
    with_data = sum(1 for rows in series if rows)
    return f"{len(scrapes)} samples over {span:.0f} s; {with_data} of {len(series)} charts have figures"
