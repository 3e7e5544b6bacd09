"""The typed wire between the host (``sandbox/runtime.py``) and the container server.

Stdlib only: this module ships into the container with the server, and the host imports the
very same classes, so both sides agree on every request and reply by construction. Each side
parses what it receives with ``parse_request`` / ``parse_reply``, which check every field's
type and refuse unknown fields: the host treats every reply as hostile input.

Frames, both directions: a ``>IQ`` header (JSON length, blob length), the JSON, the blob. A
frame whose JSON length is 0 is a *chunk* of a streamed body; an empty chunk ends the body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

HEADER = struct.Struct(">IQ")
CHUNK = 1 << 20
"""Streamed bodies (uploads, reads, tars) travel in chunks of at most this many bytes."""


class WireError(ValueError):
    """A frame that does not match the protocol (wrong field, wrong type, unknown op)."""


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(value, option, where)
            except WireError:
                continue
        raise WireError(f"{where}: {type(value).__name__} is not {hint}")
    if hint is type(None):
        if value is not None:
            raise WireError(f"{where}: expected null")
        return None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WireError(f"{where}: expected a number, got {type(value).__name__}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{where}: expected an integer, got {type(value).__name__}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise WireError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise WireError(f"{where}: expected a list")
        (item,) = typing.get_args(hint)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise WireError(f"{where}: expected an object")
        _key, item = typing.get_args(hint)
        return {k: _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise WireError(f"{where}: expected an object")
        return _build(hint, value, where)
    raise WireError(f"{where}: unsupported type {hint}")  # pragma: no cover - a bug in this module


def _build(cls: type, values: dict, where: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise WireError(f"{where}: unknown field(s) {sorted(unknown)}")
    checked = {name: _check(value, hints[name], f"{where}.{name}") for name, value in values.items()}
    try:
        return cls(**checked)
    except TypeError as exc:  # a required field missing
        raise WireError(f"{where}: {exc}") from None


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


# --- requests ---------------------------------------------------------------------------------------

REQUESTS: dict[str, type[Request]] = {}


@dataclass(frozen=True, kw_only=True)
class Request:
    op: ClassVar[str] = ""
    reply: ClassVar[type] = type(None)
    upload: ClassVar[bool] = False
    """The request is followed by a streamed body (chunks)."""
    download: ClassVar[bool] = False
    """The reply's body is streamed (chunks) before the final frame."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.op:
            REQUESTS[cls.op] = cls

    def to_wire(self) -> dict:
        return {"op": self.op, **to_dict(self)}


def parse_request(header: dict) -> Request:
    values = dict(header)
    op = values.pop("op", None)
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise WireError(f"unknown operation {op!r}")
    return _build(cls, values, op)


def parse_reply(request: Request | type[Request], values: dict):
    """The reply to ``request`` from a final frame's fields (``ok`` removed)."""
    return _build(request.reply, values, f"reply to {request.op}")


# --- replies ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Empty:
    pass


@dataclass(frozen=True, kw_only=True)
class Failure:
    kind: str
    message: str


@dataclass(frozen=True, kw_only=True)
class PingReply:
    pid: int
    version: str


@dataclass(frozen=True, kw_only=True)
class ExecReply:
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool
    truncated: bool


@dataclass(frozen=True, kw_only=True)
class ProcessReply:
    process_id: str
    command: str
    pid: int
    status: str
    exit_code: int | None
    started_at: float
    ended_at: float | None


@dataclass(frozen=True, kw_only=True)
class PollReply:
    process: ProcessReply
    stdout: str
    stderr: str
    stdout_offset: int
    stderr_offset: int
    truncated: bool


@dataclass(frozen=True, kw_only=True)
class ProcessListReply:
    processes: list[ProcessReply]


@dataclass(frozen=True, kw_only=True)
class FileReply:
    path: str
    type: str
    size: int
    mtime: float


@dataclass(frozen=True, kw_only=True)
class ListReply:
    entries: list[FileReply]


@dataclass(frozen=True, kw_only=True)
class CountReply:
    count: int


@dataclass(frozen=True, kw_only=True)
class ManifestEntry:
    type: str
    size: int | None = None
    sha256: str | None = None
    target: str | None = None


@dataclass(frozen=True, kw_only=True)
class ManifestReply:
    entries: dict[str, ManifestEntry]


@dataclass(frozen=True, kw_only=True)
class DiskUsageReply:
    bytes: int


# --- the operations ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class HelloReply:
    nonce: str
    proof: str
    """HMAC-SHA256 of ``server:<client nonce>:<server nonce>`` keyed by the secret of this start."""


@dataclass(frozen=True, kw_only=True)
class Hello(Request):
    """First request on a connection: the server proves it knows the secret the host started it with."""

    op: ClassVar[str] = "hello"
    reply: ClassVar[type] = HelloReply
    nonce: str


@dataclass(frozen=True, kw_only=True)
class Prove(Request):
    """Second request: the client proves it knows the secret too; nothing else is served before."""

    op: ClassVar[str] = "prove"
    reply: ClassVar[type] = Empty
    proof: str


def proof(secret: bytes, side: str, first: str, second: str) -> str:
    """What one side of the handshake sends: ``side`` is "server" or "client"."""
    return hmac.new(secret, f"{side}:{first}:{second}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Ping(Request):
    op: ClassVar[str] = "ping"
    reply: ClassVar[type] = PingReply


@dataclass(frozen=True, kw_only=True)
class Exec(Request):
    op: ClassVar[str] = "exec"
    reply: ClassVar[type] = ExecReply
    command: str
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    timeout: float
    max_output: int
    grace: float = 2.0
    stream: bool = False
    """Send ``output`` events (blob = bytes) as the command writes, before the final frame."""


@dataclass(frozen=True, kw_only=True)
class BgStart(Request):
    op: ClassVar[str] = "bg_start"
    reply: ClassVar[type] = ProcessReply
    command: str
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    max_output: int


@dataclass(frozen=True, kw_only=True)
class BgPoll(Request):
    op: ClassVar[str] = "bg_poll"
    reply: ClassVar[type] = PollReply
    process_id: str
    stdout_offset: int = 0
    stderr_offset: int = 0


@dataclass(frozen=True, kw_only=True)
class BgKill(Request):
    op: ClassVar[str] = "bg_kill"
    reply: ClassVar[type] = ProcessReply
    process_id: str
    grace: float = 2.0


@dataclass(frozen=True, kw_only=True)
class BgList(Request):
    op: ClassVar[str] = "bg_list"
    reply: ClassVar[type] = ProcessListReply


@dataclass(frozen=True, kw_only=True)
class Read(Request):
    op: ClassVar[str] = "read"
    reply: ClassVar[type] = Empty
    download: ClassVar[bool] = True
    path: str
    max_bytes: int


@dataclass(frozen=True, kw_only=True)
class Write(Request):
    op: ClassVar[str] = "write"
    reply: ClassVar[type] = FileReply
    upload: ClassVar[bool] = True
    path: str
    mode: int | None = None


@dataclass(frozen=True, kw_only=True)
class Stat(Request):
    op: ClassVar[str] = "stat"
    reply: ClassVar[type] = FileReply
    path: str


@dataclass(frozen=True, kw_only=True)
class ListDir(Request):
    op: ClassVar[str] = "list"
    reply: ClassVar[type] = ListReply
    path: str
    recursive: bool = False


@dataclass(frozen=True, kw_only=True)
class Delete(Request):
    op: ClassVar[str] = "delete"
    reply: ClassVar[type] = Empty
    path: str
    recursive: bool = False


@dataclass(frozen=True, kw_only=True)
class Mkdir(Request):
    op: ClassVar[str] = "mkdir"
    reply: ClassVar[type] = FileReply
    path: str
    parents: bool = True
    exist_ok: bool = True


@dataclass(frozen=True, kw_only=True)
class Move(Request):
    op: ClassVar[str] = "move"
    reply: ClassVar[type] = FileReply
    src: str
    dst: str
    overwrite: bool = False


@dataclass(frozen=True, kw_only=True)
class Copy(Request):
    op: ClassVar[str] = "copy"
    reply: ClassVar[type] = FileReply
    src: str
    dst: str
    overwrite: bool = False


@dataclass(frozen=True, kw_only=True)
class TarCreate(Request):
    op: ClassVar[str] = "tar_create"
    reply: ClassVar[type] = Empty
    download: ClassVar[bool] = True
    paths: list[str]


@dataclass(frozen=True, kw_only=True)
class TarExtract(Request):
    op: ClassVar[str] = "tar_extract"
    reply: ClassVar[type] = CountReply
    upload: ClassVar[bool] = True
    dest: str
    clear: bool = False


@dataclass(frozen=True, kw_only=True)
class Manifest(Request):
    op: ClassVar[str] = "manifest"
    reply: ClassVar[type] = ManifestReply
    path: str = "."


@dataclass(frozen=True, kw_only=True)
class DiskUsage(Request):
    op: ClassVar[str] = "disk_usage"
    reply: ClassVar[type] = DiskUsageReply
    path: str = "."


@dataclass(frozen=True, kw_only=True)
class AttachReply:
    exit_code: int | None
    """Its exit status, as a shell gives it (128+N when a signal N ended it)."""


@dataclass(frozen=True, kw_only=True)
class Attach(Request):
    """A process whose stdio is this connection until it ends (an MCP server over stdio, say).

    A ``started`` event (``pid``) says it runs (a failure to start is the final frame at
    once). Then the client's chunks are the process's stdin (an empty chunk closes it);
    the server sends ``output`` events (``stream``, blob = bytes) as it writes, and the final
    frame when it has exited and its output is drained. Closing the connection kills it."""

    op: ClassVar[str] = "attach"
    reply: ClassVar[type] = AttachReply
    command: str
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    grace: float = 2.0
