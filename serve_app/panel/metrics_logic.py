"""The Metrics tab's sampling: ``/metrics`` scraped every few seconds, turned into time series.

Counters become rates (per second between two samples), histograms a mean duration over the
interval (delta of ``_sum`` over delta of ``_count``), gauges their value. Names are matched
without the ``ray_`` / ``quadracode_`` prefixes, as actors' series come through Ray's agents
(``ray_quadracode_*``) and the replica's directly (``quadracode_*``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


@dataclass
class MetricsHistory:
    """The last ``keep`` scrapes; ``series`` gives each chart's rows for a line plot."""

    keep: int = 120
    scrapes: deque = field(default_factory=deque)

    def add(self, at: float, text: str) -> None:
        self.scrapes.append((at, parse(text)))
        while len(self.scrapes) > self.keep:
            self.scrapes.popleft()

    def series(self, chart: Chart) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        scrapes = list(self.scrapes)
        for before, after in zip(scrapes, scrapes[1:], strict=False):
            when = datetime.fromtimestamp(after[0], UTC).replace(tzinfo=None)
            for group, value in points(chart, before, after).items():
                rows.append({"time": when, "value": round(value, 6), "series": group})
        return rows
