"""The runtime half of a backend: talking to the container server inside a workspace over its unix socket.

The socket file lives in a host folder that the container can write to, so it is opened with
O_PATH|O_NOFOLLOW and checked to be a socket before connecting through /proc/self/fd: a
command in the container that swaps it for a symlink (say, to the Docker socket) gets a clear
error, not a confused deputy. This also sidesteps the 107-byte limit on socket paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from quadracode_ray.interfaces.workspace import (
    PathEscapeError,
    WorkspaceConflict,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspacePathNotFound,
    WorkspaceUnavailable,
)

HEADER = struct.Struct(">IQ")
MAX_JSON = 256 << 20
MAX_BLOB = 4 << 30
POOL_SIZE = 16
RETRY_WINDOW_S = 10.0
"""How long a request whose container server went away before taking it is tried again. Not just once: a
container server killed a moment ago can still accept connections and reset them while its process is torn
down (slowly, on a loaded machine), before its socket refuses and the container server is revived."""

_ERRORS: dict[str, type[WorkspaceError]] = {
    "escape": PathEscapeError,
    "not_found": WorkspacePathNotFound,
    "invalid": WorkspaceInvalidRequest,
    "is_dir": WorkspaceInvalidRequest,
    "not_dir": WorkspaceInvalidRequest,
    "not_empty": WorkspaceInvalidRequest,
    "exists": WorkspaceConflict,
}


class ServerGone(Exception):
    """The connection broke; ``sent`` says whether the request may have been acted on."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


def error_from(reply: dict) -> WorkspaceError:
    error = reply.get("error") or {}
    return _ERRORS.get(error.get("kind"), WorkspaceError)(error.get("message") or "container server error")


async def open_socket(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        raise ServerGone(f"container server socket {path} unavailable: {exc.strerror}", sent=False) from None
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise WorkspaceUnavailable(f"{path} is not a socket (was it replaced from inside the container?)")
        try:
            return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}")
        except OSError as exc:
            raise ServerGone(f"container server at {path} refused the connection: {exc.strerror}", sent=False) from None
    finally:
        os.close(fd)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def send(self, header: dict, blob: bytes = b"") -> None:
        raw = json.dumps(header, separators=(",", ":")).encode()
        try:
            self.writer.write(HEADER.pack(len(raw), len(blob)) + raw)
            if blob:
                self.writer.write(blob)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ServerGone(f"container server connection broke while sending: {exc}", sent=False) from None

    async def receive(self) -> tuple[dict, bytes]:
        try:
            json_len, blob_len = HEADER.unpack(await self.reader.readexactly(HEADER.size))
            if json_len > MAX_JSON or blob_len > MAX_BLOB:
                raise WorkspaceUnavailable("container server sent an oversized frame")
            header = json.loads(await self.reader.readexactly(json_len))
            blob = await self.reader.readexactly(blob_len) if blob_len else b""
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise ServerGone(f"container server connection broke: {exc}", sent=True) from None
        return header, blob

    def alive(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class ServerRuntime:
    """Requests to one container server, over a small pool of connections (one request per connection
    at a time). ``revive`` (re)starts the container server when it cannot be reached."""

    def __init__(self, socket_path: Callable[[], Path], revive: Callable[[], Awaitable[None]]):
        self._socket_path = socket_path
        self._revive = revive
        self._idle: list[_Connection] = []
        self._revive_lock = asyncio.Lock()

    @property
    def socket_path(self) -> Path:
        return self._socket_path()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _connect(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive():
                return conn
            conn.close()  # the container server went away since this connection was last used
        try:
            return _Connection(*await open_socket(self.socket_path))
        except ServerGone:
            async with self._revive_lock:
                try:
                    return _Connection(*await open_socket(self.socket_path))
                except ServerGone:
                    self.close()
                    await self._revive()
            return _Connection(*await open_socket(self.socket_path))

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) < POOL_SIZE:
            self._idle.append(conn)
        else:
            conn.close()

    async def call(self, header: dict, blob: bytes = b"", *, timeout: float = 300.0,
                   idempotent: bool = True) -> tuple[dict, bytes]:
        """One request and its reply; retried on a fresh connection while the container server is gone
        (for up to RETRY_WINDOW_S). A non-idempotent request is retried only if the container server never
        acknowledged it, an idempotent one that reached it once at most."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETRY_WINDOW_S
        delay = 0.0  # the first retry at once: usually a pooled connection the container server outlived
        resent = False
        while True:
            conn = await self._connect()
            try:
                if idempotent:
                    await conn.send(header, blob)
                else:
                    await conn.send(header | {"ack": True}, blob)
                    try:
                        await asyncio.wait_for(conn.receive(), timeout)  # the "accepted" frame
                    except ServerGone as exc:
                        exc.sent = False
                        raise
                reply, out = await asyncio.wait_for(conn.receive(), timeout)
            except ServerGone as exc:
                conn.close()
                self.close()  # every pooled connection went with the container server
                # A request that reached the container server is sent again once at most (idempotent ones
                # only): if it is what kills the container server, reviving it over and over helps nobody.
                again = not exc.sent or (idempotent and not resent)
                resent = resent or exc.sent
                if again and loop.time() < give_up:
                    # A retry delay while a dying server's process is torn down, not synchronisation.
                    await asyncio.sleep(delay)
                    delay = min(max(delay * 2, 0.02), 1.0)
                    continue
                raise WorkspaceUnavailable(f"the container server died during {header.get('op')}: {exc}") from None
            except BaseException:
                conn.close()  # timed out or cancelled: the reply may still come, so never reuse
                raise
            self._release(conn)
            if not reply.get("ok"):
                raise error_from(reply)
            return reply, out

    async def stream(self, header: dict, *, timeout: float) -> AsyncIterator[tuple[dict, bytes]]:
        """Frames of a streaming request, the final one (with ``ok``) last."""
        conn = await self._connect()
        done = False
        try:
            await conn.send(header)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                frame, blob = await asyncio.wait_for(conn.receive(), max(deadline - loop.time(), 0.001))
                if "ok" in frame:
                    done = True
                    if not frame["ok"]:
                        raise error_from(frame)
                    yield frame, blob
                    return
                yield frame, blob
        except ServerGone as exc:
            raise WorkspaceUnavailable(f"the container server died during a streamed exec: {exc}") from None
        finally:
            if done:
                self._release(conn)
            else:
                conn.close()  # closing tells the container server to kill the command
