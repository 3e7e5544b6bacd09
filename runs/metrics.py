"""The run engine's metrics, declared once through the facade (Ray's backend inside actors)."""

from __future__ import annotations

from quadracode_ray import metrics


def api_runs():
    return metrics.counter("api_runs_total", "Runs of the LangGraph API ended by a run host, by graph and status "
                           "(success, error, interrupted).", ("graph", "status"))


def api_run_seconds():
    return metrics.histogram("api_run_seconds", "Duration of LangGraph API runs on their host, by graph.", ("graph",))
