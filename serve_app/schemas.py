"""Request bodies of the assistants, threads and runs routes (the official server's fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

StreamMode = Literal["values", "updates", "messages", "messages-tuple", "events", "debug", "custom",
                     "tasks", "checkpoints"]
STREAM_MODES: tuple[str, ...] = StreamMode.__args__  # type: ignore[attr-defined]
SortOrder = Literal["asc", "desc"]



def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("webhook must be an http:// or https:// URL")
    return value


WebhookUrl = Annotated[str | None, AfterValidator(_http_url)]
"""A URL the server POSTs the finished run to (runs and crons alike)."""

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- assistants ---------------------------------------------------------------------------------
class AssistantCreate(Body):
    graph_id: str = Field(min_length=1)
    assistant_id: UUID | None = Field(default=None, description="The new assistant's id; one is generated when omitted.")
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(Body):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None


class AssistantCount(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersionsSearch(Body):
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class AssistantLatest(Body):
    version: int = Field(ge=1)


# --- threads -----------------------------------------------------------------------------------
class ThreadSuperstepUpdate(Body):
    values: Any = None
    command: dict[str, Any] | None = None
    as_node: str


class ThreadSuperstep(Body):
    updates: list[ThreadSuperstepUpdate]


class ThreadCreate(Body):
    thread_id: UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: dict[str, Any] | None = None
    supersteps: list[ThreadSuperstep] | None = None
    graph_id: str | None = None


class ThreadPatch(Body):
    metadata: dict[str, Any] | None = None
    ttl: dict[str, Any] | None = None


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]


class ThreadSearch(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    ids: list[UUID] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None
    extract: dict[str, str] | None = None


class ThreadCount(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class CheckpointRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    checkpoint_id: str | None = None
    checkpoint_ns: str | None = ""
    checkpoint_map: dict[str, Any] | None = None
    thread_id: str | None = None


class ThreadStateUpdate(Body):
    values: Any = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class ThreadStateCheckpoint(Body):
    checkpoint: CheckpointRef
    subgraphs: bool = False


class ThreadHistory(Body):
    limit: int = Field(default=10, ge=1, le=1000)
    before: CheckpointRef | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


class ThreadPrune(Body):
    thread_ids: list[UUID] = Field(min_length=1)
    strategy: Literal["delete", "keep_latest"] = "delete"


# --- runs ----------------------------------------------------------------------------------------
class RunCommand(Body):
    update: Any = None
    resume: Any = None
    goto: Any = None


class RunCreate(Body):
    """Body of every run-creating route; ``on_completion`` only matters for stateless runs."""

    assistant_id: str = Field(min_length=1)
    input: Any = None
    command: RunCommand | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    checkpoint_during: bool | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: WebhookUrl = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    on_disconnect: Literal["cancel", "continue"] | None = None
    feedback_keys: list[str] | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    after_seconds: float | None = Field(default=None, ge=0, le=366 * 24 * 3600)
    durability: Literal["sync", "async", "exit"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: bool | None = None


    def stream_modes(self) -> list[str]:
        if self.stream_mode is None:
            return ["values"]
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)
        return list(dict.fromkeys(modes)) or ["values"]


class RunBatchItem(RunCreate):
    pass


class RunsCancel(Body):
    thread_id: UUID | None = None
    run_ids: list[UUID] | None = None
    status: Literal["pending", "running", "all"] | None = None
