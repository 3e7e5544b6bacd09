"""The settings a run carries: what to run and how, stored as ``qr_runs.kwargs``.

One model for every way a run is queued (an API request in ``serve_app/runs/service.py``, a run
queued from inside the fabric in ``runs/enqueue.py``), so a row always has the same keys, the
ones the API shows as a run's ``kwargs``. The host reads them back from the row.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    """A LangGraph ``Command`` as JSON (resume, update, goto)."""
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    stream_mode: list[str] = Field(default_factory=lambda: ["values"])
    interrupt_before: list[str] | Literal["*"] | None = None
    interrupt_after: list[str] | Literal["*"] | None = None
    webhook: str | None = None
    feedback_keys: list[str] | None = None
    temporary: bool = False
    """The run's thread goes with it (a stateless run not kept)."""
    subgraphs: bool = False
    resumable: bool = False
    """Its events are stored as they happen, so a client resumes with Last-Event-ID."""
    checkpoint_during: bool = True
    durability: Literal["sync", "async", "exit"] = "async"

    def row(self) -> dict[str, Any]:
        """As stored in ``qr_runs.kwargs``."""
        return self.model_dump(mode="json")
