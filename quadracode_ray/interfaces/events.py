"""Reporting an event from a graph to whoever watches the system (the event bus, in actors)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class EventReporter(Protocol):
    def report(self, kind: str, payload: dict[str, Any], *, thread_id: str | None = None) -> None:
        """Publish ``payload`` as an event of ``kind``; returns at once and never raises."""
        ...
