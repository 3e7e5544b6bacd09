"""Stdio sessions: long-lived processes in a workspace whose stdin and stdout a caller drives.

What an MCP server over stdio needs, through any number of actor calls: ``open`` attaches a
process (``runtime.Attached``, a connection of its own to the container server), a reader task
moves its output into bounded buffers, ``read`` waits for output or its end, ``write`` feeds its
stdin, ``close`` hangs up (which kills it). Everything the process writes is hostile: stdout
waits in a buffer of at most ``MAX_STDOUT_BUFFER`` bytes (beyond it the reader stops taking
frames, so the process blocks on its pipe), stderr keeps only its last ``STDERR_TAIL`` bytes.
A session nobody read or wrote for ``IDLE_TIMEOUT_S`` (its caller died, say) is closed, and
at most ``MAX_SESSIONS`` are open per workspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from quadracode_ray.interfaces.workspace import (
    StdioOutput,
    StdioSession,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspaceNotFound,
)
from sandbox.container_server import wire
from sandbox.runtime import Attached

MAX_STDOUT_BUFFER = 4 << 20
STDERR_TAIL = 8192
MAX_SESSIONS = 16
IDLE_TIMEOUT_S = 600.0
MAX_READ_BYTES = 4 << 20
MAX_READ_TIMEOUT_S = 120.0


class _Session:
    def __init__(self, session_id: str, attached: Attached, command: str):
        self.info = StdioSession(session_id=session_id, command=command)
        self.attached = attached
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exit_code: int | None = None
        self.error: str | None = None
        self.ended = False
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.touched = time.monotonic()
        self.write_lock = asyncio.Lock()
        self.reader = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                await self.room.wait()
                item = await self.attached.receive()
                if isinstance(item, wire.AttachReply):
                    self.exit_code = item.exit_code
                    break
                stream, data = item
                if stream == "stdout":
                    self.stdout += data
                    if len(self.stdout) >= MAX_STDOUT_BUFFER:
                        self.room.clear()  # nobody reads: stop taking its output (it blocks on its pipe)
                else:
                    self.stderr = (self.stderr + data)[-STDERR_TAIL:]
                self.changed.set()
        except WorkspaceError as exc:
            self.error = str(exc)
        finally:
            self.ended = True
            self.attached.close()
            self.changed.set()

    def take(self, max_bytes: int) -> StdioOutput:
        data = bytes(self.stdout[:max_bytes])
        del self.stdout[:max_bytes]
        if len(self.stdout) < MAX_STDOUT_BUFFER:
            self.room.set()
        exited = self.ended and not self.stdout
        if not self.stdout and not self.ended:
            self.changed.clear()
        tail = self.stderr.decode("utf-8", "replace")
        if exited and self.error:
            tail = (tail + f"\n[{self.error}]")[-STDERR_TAIL:]
        return StdioOutput(stdout=data, stderr_tail=tail, exited=exited, exit_code=self.exit_code if exited else None)

    async def close(self) -> None:
        self.attached.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class StdioSessions:
    """The stdio sessions of one workspace (``attach`` starts a process: ``runtime.attach``)."""

    def __init__(self, attach):
        self._attach = attach
        self._sessions: dict[str, _Session] = {}

    @property
    def open_count(self) -> int:
        return len(self._sessions)

    def _get(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise WorkspaceNotFound(f"no stdio session {session_id!r} (closed, idle too long, or never opened)")
        session.touched = time.monotonic()
        return session

    async def _reap_idle(self) -> None:
        now = time.monotonic()
        for session_id, session in list(self._sessions.items()):
            if now - session.touched > IDLE_TIMEOUT_S:
                await self.close(session_id)

    async def open(self, request: wire.Attach) -> StdioSession:
        await self._reap_idle()
        if len(self._sessions) >= MAX_SESSIONS:
            raise WorkspaceInvalidRequest(f"this workspace already has {MAX_SESSIONS} stdio sessions open; close one")
        session_id = uuid.uuid4().hex[:16]
        session = _Session(session_id, await self._attach(request), request.command)
        self._sessions[session_id] = session
        return session.info

    async def write(self, session_id: str, data: bytes, close: bool) -> None:
        session = self._get(session_id)
        if session.ended:
            raise WorkspaceInvalidRequest(f"stdio session {session_id!r} has ended (exit code {session.exit_code})")
        async with session.write_lock:
            try:
                if data:
                    await session.attached.write(data)
                if close:
                    await session.attached.close_stdin()
            except Exception as exc:  # the connection broke: the reader says how it ended
                raise WorkspaceInvalidRequest(f"stdio session {session_id!r} cannot take input: {exc}") from None

    async def read(self, session_id: str, max_bytes: int, timeout: float) -> StdioOutput:
        if not 0 < max_bytes <= MAX_READ_BYTES or not 0 <= timeout <= MAX_READ_TIMEOUT_S:
            raise WorkspaceInvalidRequest(f"read_stdio takes 1-{MAX_READ_BYTES} bytes and 0-{MAX_READ_TIMEOUT_S:.0f} s")
        session = self._get(session_id)
        if not session.stdout and not session.ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.changed.wait(), timeout)
        output = session.take(max_bytes)
        if output.exited:
            self._sessions.pop(session_id, None)
        return output

    async def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.close()

    async def close_all(self) -> None:
        for session_id in list(self._sessions):
            await self.close(session_id)
