"""The settings a run carries: one model, the same keys however the run was queued."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runs.settings import RunSettings

API_KWARGS_KEYS = {"input", "command", "config", "context", "stream_mode", "interrupt_before", "interrupt_after",
                   "webhook", "feedback_keys", "temporary", "subgraphs", "resumable", "checkpoint_during",
                   "durability", "graph_id", "error_attempts", "error_backoff_s"}


def test_a_run_queued_from_inside_has_every_key_an_api_run_has() -> None:
    row = RunSettings(graph_id="orchestrator", input={"task_results": []}, durability="sync").row()
    assert set(row) == API_KWARGS_KEYS
    assert row["stream_mode"] == ["values"] and row["checkpoint_during"] is True and row["temporary"] is False
    assert set(RunSettings.public(row)) == API_KWARGS_KEYS - {"graph_id", "error_attempts", "error_backoff_s"}


def test_unknown_or_malformed_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        RunSettings(graph_id="g", streaming=True)
    with pytest.raises(ValidationError):
        RunSettings(graph_id="g", durability="eventually")
