"""Request and response bodies of the cron routes (the official wire shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.crons.schedule import check_schedule, check_timezone
from serve_app.schemas import WebhookUrl

StreamMode = Literal["values", "messages", "messages-tuple", "updates", "events", "debug", "custom",
                     "tasks", "checkpoints"]
# Keys of a cron body that describe the schedule rather than the run each fire makes.
SCHEDULE_FIELDS = frozenset({"schedule", "end_time", "enabled", "timezone", "on_run_completed"})
SORTABLE = ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at", "updated_at")
CRON_FIELDS = ("cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time", "schedule", "timezone",
               "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata", "enabled")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RunFields(_Body):
    """What each fire's run is made of (the same fields a run request takes)."""

    input: Any = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Metadata of the cron, and of each run it makes.")
    checkpoint_during: bool | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    webhook: WebhookUrl = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None



class _ScheduleFields(_Body):
    @field_validator("schedule", check_fields=False)
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else check_schedule(value)

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)


class ThreadCronCreate(_RunFields, _ScheduleFields):
    assistant_id: str = Field(min_length=1, description="Assistant UUID or graph name.")
    schedule: str = Field(description="Cron schedule, e.g. '*/5 * * * *' (UTC unless timezone is given).")
    end_time: datetime | None = Field(default=None, description="No fire after this time.")
    enabled: bool = True
    timezone: str | None = Field(default=None, description="IANA timezone of the schedule.")
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None


class CronCreate(ThreadCronCreate):
    on_run_completed: Literal["delete", "keep"] | None = Field(
        default=None, description="Each fire's thread: deleted after its run (default) or kept.")


class CronPatch(_RunFields, _ScheduleFields):
    schedule: str | None = None
    end_time: datetime | None = Field(default=None, description="Explicit null clears the end time.")
    enabled: bool | None = None
    timezone: str | None = None
    on_run_completed: Literal["delete", "keep"] | None = None


class CronSearch(_Body):
    assistant_id: str | None = None
    thread_id: UUID | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal[SORTABLE] | None = None  # type: ignore[valid-type]
    sort_order: Literal["asc", "desc", "ASC", "DESC"] | None = None
    select: list[Literal[CRON_FIELDS]] | None = None  # type: ignore[valid-type]


class CronCount(_Body):
    assistant_id: str | None = None
    thread_id: UUID | None = None
    metadata: dict[str, Any] | None = None


class Cron(BaseModel):
    cron_id: UUID
    assistant_id: UUID = Field(description="The UUID of the assistant the cron runs.")
    thread_id: UUID | None
    on_run_completed: Literal["delete", "keep"] | None
    end_time: datetime | None
    schedule: str
    timezone: str | None
    created_at: datetime
    updated_at: datetime
    user_id: str | None
    payload: dict[str, Any]
    next_run_date: datetime
    metadata: dict[str, Any]
    enabled: bool
