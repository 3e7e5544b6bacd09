"""The settings a run carries: what to run and how, stored as ``qr_runs.kwargs``.

One model for every way a run is queued (an API request in ``serve_app/runs/service.py``, a run
queued from inside the fabric in ``runs/enqueue.py``), so a row always has the same keys, the
ones the API shows as a run's ``kwargs``. The host reads them back from the row.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ENGINE_ONLY = frozenset({"graph_id", "error_attempts", "error_backoff_s"})
"""Keys of ``qr_runs.kwargs`` the official server's runs do not have."""


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
    error_attempts: int = Field(default=1, ge=1, le=100)
    """Attempts when the graph raises: the run is tried again after ``error_backoff_s`` (doubling),
    from its last checkpoint, until it succeeds or has used them all. API runs get one; runs of
    user messages and agents' results as many as the fabric's deliveries."""
    error_backoff_s: float = Field(default=0.0, ge=0.0, le=3600.0)

    @staticmethod
    def public(kwargs: dict[str, Any]) -> dict[str, Any]:
        """A stored run's settings as the API shows them (the engine's own keys left out)."""
        return {k: v for k, v in kwargs.items() if k not in ENGINE_ONLY}

    def row(self) -> dict[str, Any]:
        """As stored in ``qr_runs.kwargs``."""
        return self.model_dump(mode="json")
