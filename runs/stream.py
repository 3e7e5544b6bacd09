"""What a run produces, as the wire needs it: JSON bytes per event, kept in an ordered log.

Chunks are serialised once, in the executor, so the API replica relays bytes untouched.
Event names starting with ``__`` are control events (the run's final result), never sent
to clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import PurePath
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel

END_EVENT = "__end__"


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_json") and type(obj).__module__.startswith("langchain"):
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return obj._asdict()
    if isinstance(obj, (UUID, PurePath)):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return repr(obj)


def dumps(obj: Any) -> bytes:
    """JSON bytes of anything a graph can stream (messages, interrupts, commands, ...)."""
    try:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        # orjson refuses integers past 64 bits, which JSON and Postgres' jsonb hold (metadata a
        # client sent): the standard library writes them (found by the fuzzer: a 500 on read-back).
        return json.dumps(obj, default=_default, ensure_ascii=False).encode()


def error_payload(exc: BaseException) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}


@dataclasses.dataclass(frozen=True)
class StreamEvent:
    seq: int
    event: str
    data: bytes


class RunStream:
    """The ordered events of one run attempt; subscribers wait on a condition, never poll."""

    def __init__(self, run_id: str, *, max_events: int = 100_000):
        self.run_id = run_id
        self.events: list[StreamEvent] = []
        self.dropped = 0  # events discarded from the front to bound memory
        self.max_events = max_events
        self.finished = False
        self.finished_at: float | None = None
        # Finished without running here: the run had ended already (runs/host.py
        # _end_stream_of_a_run_that_ended); its readers turn to the stored events.
        self.ended_elsewhere = False
        self._changed = asyncio.Condition()

    @property
    def next_seq(self) -> int:
        return self.dropped + len(self.events)

    async def publish(self, event: str, data: bytes) -> StreamEvent:
        item = StreamEvent(self.next_seq, event, data)
        async with self._changed:
            self.events.append(item)
            if len(self.events) > self.max_events:
                drop = len(self.events) - self.max_events
                del self.events[:drop]
                self.dropped += drop
            self._changed.notify_all()
        return item

    async def finish(self) -> None:
        async with self._changed:
            self.finished = True
            self.finished_at = time.monotonic()
            self._changed.notify_all()

    def keep_only_end(self) -> None:
        """Free a finished stream's events but its last (the run's end)."""
        if self.finished and len(self.events) > 1:
            self.dropped += len(self.events) - 1
            del self.events[:-1]

    def since(self, after: int) -> list[StreamEvent]:
        start = max(after + 1 - self.dropped, 0)
        return self.events[start:]

    async def wait_beyond(self, after: int, timeout: float | None = None) -> None:
        """Return once an event with seq > after exists or the stream finished."""
        # asyncio.timeout, not wait_for: no task of its own per wait (every reader waits with one).
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.finished or self.next_seq > after + 1)
        except TimeoutError:
            pass

    async def gather(self, after: int, items: list[StreamEvent], window_s: float) -> list[StreamEvent]:
        """``items`` (the events after ``after``) with those that follow within ``window_s``,
        up to the run's end (a batch for a reader in another process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        while items[-1].event != END_EVENT and not self.finished:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self.wait_beyond(items[-1].seq, timeout=remaining)
            items = self.since(after)
        return items


def batch(events: Iterable[StreamEvent]) -> list[tuple[int, str, bytes]]:
    return [(e.seq, e.event, e.data) for e in events]
