"""The envelope: the one message shape every actor of the system sends and receives.

An envelope is addressed (sender and recipient are logical addresses such as
``orchestrator`` or an agent id, never Ray handles), belongs to a conversation thread when
it has one, and carries a JSON payload. Its ``id`` is what delivery de-duplicates on, so a
retried send never produces a second effect; ``attempt`` counts handler attempts.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

# Kinds the fabric itself sends; applications may use others.
USER_MESSAGE: Final = "user_message"
GRAPH_INPUT: Final = "graph_input"
TASK: Final = "task"
TASK_RESULT: Final = "task_result"
CANCEL_TASK: Final = "cancel_task"
AGENT_LOST: Final = "agent_lost"
DEAD_LETTER: Final = "dead_letter"
SYSTEM_EVENT: Final = "system_event"
PING: Final = "ping"
PONG: Final = "pong"


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=200)
    sender: str = Field(min_length=1, max_length=200)
    recipient: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.:-]+$")
    thread_id: str | None = Field(default=None, max_length=200)
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    attempt: int = Field(default=0, ge=0)
    """How many times a handler has been given this envelope before (0 on first delivery)."""

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def text(self) -> str:
        """The text regex filters search: the payload as compact JSON."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)

    def reply(self, kind: str, payload: dict[str, Any], *, id: str | None = None) -> Envelope:
        """An envelope back to this one's sender, in the same thread."""
        fields: dict[str, Any] = {"sender": self.recipient, "recipient": self.sender, "kind": kind,
                                  "thread_id": self.thread_id, "payload": payload}
        if id is not None:
            fields["id"] = id
        return Envelope(**fields)

    def for_attempt(self, attempt: int) -> Envelope:
        return self.model_copy(update={"attempt": attempt})


class EnvelopeFilter(BaseModel):
    """What a watcher or a query of the event log selects; every field narrows, None means any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: str | None = None
    recipient: str | None = None
    kind: str | None = None
    kinds: list[str] | None = None
    thread_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text_regex: str | None = Field(default=None, max_length=1000)

    @field_validator("text_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            text_pattern(value)
        return value

    def matches(self, envelope: Envelope) -> bool:
        if self.sender is not None and envelope.sender != self.sender:
            return False
        if self.recipient is not None and envelope.recipient != self.recipient:
            return False
        if self.kind is not None and envelope.kind != self.kind:
            return False
        if self.kinds is not None and envelope.kind not in self.kinds:
            return False
        if self.thread_id is not None and envelope.thread_id != self.thread_id:
            return False
        if self.since is not None and envelope.created_at < self.since:
            return False
        if self.until is not None and envelope.created_at >= self.until:
            return False
        if self.text_regex is not None and text_pattern(self.text_regex).search(envelope.text()) is None:
            return False
        return True


@functools.lru_cache(maxsize=256)
def text_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2, which matches in time linear in the text: a filter sent by any
    caller runs inside the event bus, where a backtracking pattern such as ``(a+)+$`` would stall
    every watcher. RE2's syntax is Python's without backreferences and look-around; anything else
    is a ``ValueError`` with the reason."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = 8 << 20
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid regular expression (RE2 syntax: no backreferences or look-around): "
                         f"{reason}") from None
