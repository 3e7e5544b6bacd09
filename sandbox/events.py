"""Where sandbox operations are reported: a small protocol the event bus implements.

The sandbox never waits for whoever listens: ``emit`` must return at once (an event-bus
adapter forwards with a fire-and-forget actor call). A sink that raises is logged and ignored,
because reporting must never fail the operation it reports.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol, runtime_checkable

from sandbox.models import SandboxEvent

log = logging.getLogger(__name__)


@runtime_checkable
class EventSink(Protocol):
    def emit(self, event: SandboxEvent) -> None: ...


class InMemoryEventSink:
    """The default sink: the most recent events in a bounded ring."""

    def __init__(self, capacity: int = 1000):
        self._events: deque[SandboxEvent] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def emit(self, event: SandboxEvent) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, operation: str | None = None) -> list[SandboxEvent]:
        with self._lock:
            items = list(self._events)
        return [e for e in items if operation is None or e.operation == operation]


class FanOutSink:
    """Sends each event to several sinks; one failing sink does not stop the others."""

    def __init__(self, *sinks: EventSink):
        self.sinks = [sink for sink in sinks if sink is not None]

    def emit(self, event: SandboxEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # noqa: BLE001 - reporting must never fail the operation
                log.exception("event sink %r failed", sink)
