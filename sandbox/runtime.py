"""The runtime half of a backend: talking to the container server inside a workspace over its unix socket.

Requests and replies are the typed dataclasses of ``sandbox.container_server.wire``, shared with
the server. Everything that comes back is treated as hostile: frames are size-checked before
they are read, every reply is type-checked field by field, and streamed bodies (reads, tars)
go to a sink with a byte cap instead of being trusted to be small.

The socket file lives in a host folder the container can see, so it is opened with
O_PATH|O_NOFOLLOW and checked to be a socket before connecting through /proc/self/fd: a
command in the container that swaps it for a symlink (say, to the Docker socket) gets a clear
error, not a confused deputy. This also sidesteps the 107-byte limit on socket paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from quadracode_ray.interfaces.workspace import (
    PathEscapeError,
    WorkspaceConflict,
    WorkspaceDiskFull,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspacePathNotFound,
    WorkspaceUnavailable,
)
from sandbox.container_server import wire

HEADER = wire.HEADER
MAX_JSON = 64 << 20
"""The largest JSON reply accepted (a recursive listing of a big tree); more is hostile."""
MAX_EVENT_BLOB = 1 << 20
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
    "no_space": WorkspaceDiskFull,
    "exhausted": WorkspaceUnavailable,
}
HANDSHAKE_TIMEOUT_S = 5.0
PROBE_AFTER_S = 3.0
"""A reply slower than this has the server probed (a ping on another connection)..."""
PROBE_TIMEOUT_S = 3.0
"""...which must answer within this long, or the server is declared hung, killed and restarted."""
REPLY_GRACE_S = 5.0
ATTACH_START_TIMEOUT_S = 30.0
"""How long the host waits for an attached process to be started."""
"""How much longer than a request's own timeout the host waits for its reply."""


class ServerGone(Exception):
    """The connection broke; ``sent`` says whether the request may have been acted on."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


class HostileReply(WorkspaceUnavailable):
    """The container server sent something outside the protocol (too big, malformed)."""


class ServerRefused(WorkspaceUnavailable):
    """The process on the socket is not the container server this host started."""


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


def error_from(reply: dict) -> WorkspaceError:
    error = reply.get("error")
    if not isinstance(error, dict):
        return HostileReply("the container server sent a failure without an error")
    kind, message = error.get("kind"), error.get("message")
    message = message[:4000] if isinstance(message, str) else "container server error"
    return _ERRORS.get(kind if isinstance(kind, str) else "", WorkspaceError)(message)


class BytesSink:
    """Collects a streamed body in memory, refusing more than ``limit`` bytes."""

    def __init__(self, limit: int, what: str = "reply"):
        self.limit, self.what, self.data = limit, what, bytearray()

    def reset(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.limit:
            raise WorkspaceInvalidRequest(f"the {self.what} is larger than the limit of {self.limit} bytes")
        self.data += chunk

    def close(self) -> None:
        pass


async def open_socket(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        raise ServerGone(f"container server socket {path} unavailable: {exc.strerror}", sent=False) from None
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise WorkspaceUnavailable(f"{path} is not a socket (was it replaced from inside the container?)")
        try:
            return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}", limit=1 << 20)
        except OSError as exc:
            raise ServerGone(f"container server at {path} refused the connection: {exc.strerror}", sent=False) from None
    finally:
        os.close(fd)


def _body_chunks(body) -> list | None:
    """An upload as a list of chunk views (bytes-like) or None for a file path (read lazily)."""
    if isinstance(body, Path):
        return None
    view = memoryview(body).cast("B")
    return [view[i:i + wire.CHUNK] for i in range(0, len(view), wire.CHUNK)]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def _write(self, data) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ServerGone(f"container server connection broke while sending: {exc}", sent=False) from None

    async def send(self, header: dict | None, blob=b"") -> None:
        raw = json.dumps(header, separators=(",", ":")).encode() if header is not None else b""
        await self._write(HEADER.pack(len(raw), len(blob)) + raw)
        if len(blob):
            await self._write(blob)

    async def send_body(self, body) -> None:
        """An upload as chunks then the empty chunk; a file is read a chunk at a time."""
        chunks = _body_chunks(body)
        if chunks is not None:
            for chunk in chunks:
                await self.send(None, chunk)
        else:
            with open(body, "rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, wire.CHUNK):
                    await self.send(None, chunk)
        await self.send(None, b"")

    async def receive(self) -> tuple[dict | None, bytes]:
        """A frame: (header, blob), or (None, chunk) for a chunk of a streamed body."""
        try:
            json_len, blob_len = HEADER.unpack(await self.reader.readexactly(HEADER.size))
            if json_len > MAX_JSON or blob_len > (wire.CHUNK if json_len == 0 else MAX_EVENT_BLOB):
                raise HostileReply(f"the container server sent an oversized frame ({json_len} + {blob_len} bytes)")
            header = json.loads(await self.reader.readexactly(json_len)) if json_len else None
            blob = await self.reader.readexactly(blob_len) if blob_len else b""
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise ServerGone(f"container server connection broke: {exc}", sent=True) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise HostileReply(f"the container server sent a malformed frame: {exc}") from None
        if header is not None and not isinstance(header, dict):
            raise HostileReply("the container server sent a frame that is not an object")
        return header, blob

    def alive(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class ServerRuntime:
    """Requests to one container server, over a small pool of connections (one request per connection
    at a time). ``revive`` (re)starts the container server when it cannot be reached."""

    def __init__(self, socket_path: Callable[[], Path], revive: Callable[[], Awaitable[None]], *,
                 secret: Callable[[], bytes], server_uid: Callable[[], int | None] = lambda: None,
                 restart: Callable[[str], Awaitable[None]] | None = None):
        self._socket_path = socket_path
        self._revive = revive
        self._secret = secret
        self._server_uid = server_uid
        self._restart = restart
        self._idle: list[_Connection] = []
        self._revive_lock = asyncio.Lock()

    @property
    def socket_path(self) -> Path:
        return self._socket_path()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _open(self) -> _Connection:
        """A new connection, authenticated both ways: the peer must run as the server's uid and
        prove it knows the secret of this start; then we prove it too."""
        conn = _Connection(*await open_socket(self.socket_path))
        try:
            expected = self._server_uid()
            uid = peer_uid(conn.writer)
            if expected is not None and uid != expected:
                raise ServerRefused(f"the process listening on {self.socket_path} runs as uid {uid}, not the "
                                    f"container server's uid {expected}: refused")
            secret = self._secret()
            nonce = secrets.token_hex(16)
            hello = wire.Hello(nonce=nonce)
            await conn.send(hello.to_wire())
            reply = self._parse(hello, await self._handshake_frame(conn))
            if not hmac.compare_digest(reply.proof, wire.proof(secret, "server", nonce, reply.nonce)):
                raise ServerRefused(f"the process listening on {self.socket_path} could not prove it is the container "
                                    "server this host started (wrong secret): refused, nothing sent to it")
            prove = wire.Prove(proof=wire.proof(secret, "client", reply.nonce, nonce))
            await conn.send(prove.to_wire())
            self._parse(prove, await self._handshake_frame(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    async def _handshake_frame(conn: _Connection) -> dict:
        try:
            frame, _ = await asyncio.wait_for(conn.receive(), HANDSHAKE_TIMEOUT_S)
        except TimeoutError:
            raise ServerGone("the container server did not answer the handshake", sent=False) from None
        except ServerGone as exc:
            exc.sent = False
            raise
        if frame is None:
            raise HostileReply("the container server sent a body chunk during the handshake")
        return frame

    async def _connect(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive():
                return conn
            conn.close()  # the container server went away since this connection was last used
        try:
            return await self._open()
        except ServerGone:
            async with self._revive_lock:
                try:
                    return await self._open()
                except ServerGone:
                    self.close()
                    await self._revive()
            return await self._open()

    async def probe(self) -> bool:
        """Whether the server answers a ping on a fresh connection within PROBE_TIMEOUT_S."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                conn = await self._open()
                try:
                    await conn.send(wire.Ping().to_wire())
                    frame, _ = await conn.receive()
                finally:
                    conn.close()
            return bool(frame and frame.get("ok"))
        except (TimeoutError, ServerGone, WorkspaceUnavailable, OSError):
            return False

    async def _hung(self, op: str) -> WorkspaceUnavailable:
        """The server stopped answering: restart it (a new process, a new secret) and say why."""
        cause = (f"the container server stopped answering during {op} (no reply to a liveness ping within "
                 f"{PROBE_TIMEOUT_S:.0f} s)")
        self.close()
        if self._restart is None:
            return WorkspaceUnavailable(cause)
        try:
            await self._restart(cause)
        except Exception as exc:  # noqa: BLE001 - the cause matters more than the restart's failure
            return WorkspaceUnavailable(f"{cause}; restarting it failed: {exc}")
        return WorkspaceUnavailable(f"{cause}; it was killed and restarted (running commands and background jobs are lost)")

    async def _frame(self, conn: _Connection, deadline: float, op: str) -> tuple[dict | None, bytes]:
        """The next frame, probing the server whenever it is silent for PROBE_AFTER_S; past the
        deadline (the request's timeout plus REPLY_GRACE_S) the call fails, typed."""
        loop = asyncio.get_running_loop()
        receiving = asyncio.ensure_future(conn.receive())
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise WorkspaceUnavailable(f"the container server gave no reply to {op} within its timeout "
                                               f"plus {REPLY_GRACE_S:.0f} s")
                done, _ = await asyncio.wait({receiving}, timeout=min(left, PROBE_AFTER_S))
                if done:
                    return receiving.result()
                if not await self.probe():
                    raise await self._hung(op)
        finally:
            if not receiving.done():
                receiving.cancel()  # the connection is closed by the caller: a frame was cut

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) < POOL_SIZE:
            self._idle.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Connection, request: wire.Request, body, sink, timeout: float,
                        ack: bool):
        header = request.to_wire() | ({"ack": True} if ack else {})
        await conn.send(header)
        if request.upload:
            await conn.send_body(body if body is not None else b"")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + REPLY_GRACE_S
        acknowledged = not ack
        while True:
            try:
                frame, blob = await self._frame(conn, deadline, request.op)
            except ServerGone as exc:
                exc.sent = acknowledged
                raise
            if frame is None:
                if sink is None:
                    raise HostileReply(f"the container server sent a body to {request.op}, which has none")
                sink.write(blob)
                continue
            if frame.get("event") == "accepted":
                acknowledged = True
                continue
            if "ok" not in frame:
                raise HostileReply(f"the container server sent an unexpected frame during {request.op}")
            return frame

    async def call(self, request: wire.Request, *, body=None, sink=None, timeout: float = 300.0,
                   idempotent: bool = True):
        """One request and its typed reply; retried on a fresh connection while the container server is gone
        (for up to RETRY_WINDOW_S). A non-idempotent request is retried only if the container server never
        acknowledged it, an idempotent one that reached it once at most. ``body`` is the upload
        (bytes-like or a file Path), ``sink`` receives a download (``write``, ``reset``)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETRY_WINDOW_S
        delay = 0.0  # the first retry at once: usually a pooled connection the container server outlived
        resent = False
        while True:
            conn = None
            if sink is not None:
                sink.reset()
            try:
                conn = await self._connect()
                final = await self._exchange(conn, request, body, sink, timeout, ack=not idempotent)
            except ServerGone as exc:
                if conn is not None:
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
                raise WorkspaceUnavailable(f"the container server died during {request.op}: {exc}") from None
            except BaseException:
                if conn is not None:
                    conn.close()  # timed out, cancelled or hostile: the rest may still come, so never reuse
                raise
            self._release(conn)
            return self._parse(request, final)

    @staticmethod
    def _parse(request: wire.Request, final: dict):
        if final.pop("ok") is not True:
            raise error_from(final)
        try:
            return wire.parse_reply(request, final)
        except wire.WireError as exc:
            raise HostileReply(f"the container server sent a malformed reply: {exc}") from None

    async def stream(self, request: wire.Exec, *, timeout: float) -> AsyncIterator[tuple[str, bytes] | wire.ExecReply]:
        """(stream name, bytes) pieces of a streamed exec, then its ExecReply."""
        try:
            conn = await self._connect()
        except ServerGone as exc:
            raise WorkspaceUnavailable(f"the container server cannot be reached for a streamed exec: {exc}") from None
        done = False
        try:
            await conn.send(request.to_wire())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout + REPLY_GRACE_S
            while True:
                frame, blob = await self._frame(conn, deadline, request.op)
                if frame is None:
                    raise HostileReply("the container server sent a body chunk during an exec")
                if "ok" in frame:
                    done = True
                    yield self._parse(request, frame)
                    return
                stream = frame.get("stream")
                if frame.get("event") != "output" or stream not in ("stdout", "stderr"):
                    raise HostileReply("the container server sent an unexpected frame during an exec")
                yield stream, blob
        except ServerGone as exc:
            raise WorkspaceUnavailable(f"the container server died during a streamed exec: {exc}") from None
        finally:
            if done:
                self._release(conn)
            else:
                conn.close()  # closing tells the container server to kill the command

    async def attach(self, request: wire.Attach) -> Attached:
        """A process attached to a connection of its own (``Attached``), started at once."""
        try:
            conn = await self._connect()
        except ServerGone as exc:
            raise WorkspaceUnavailable(f"the container server cannot be reached to attach a process: {exc}") from None
        try:
            await conn.send(request.to_wire())
            try:
                frame, _ = await asyncio.wait_for(conn.receive(), ATTACH_START_TIMEOUT_S)
            except TimeoutError:
                raise WorkspaceUnavailable(f"the container server did not start {request.command[:100]!r} "
                                           f"within {ATTACH_START_TIMEOUT_S:.0f} s") from None
            except ServerGone as exc:
                raise WorkspaceUnavailable(f"the container server died while attaching a process: {exc}") from None
            if frame is not None and "ok" in frame:
                self._parse(request, frame)  # a failure to start: its typed error
                raise HostileReply("the container server ended an attached process before starting it")
            if frame is None or frame.get("event") != "started":
                raise HostileReply("the container server sent an unexpected frame while attaching a process")
        except BaseException:
            conn.close()
            raise
        return Attached(conn, request)


class Attached:
    """The host's end of an attached process: ``write`` its stdin, ``receive`` its output and,
    last, its ``AttachReply``. Frames are size-checked as any reply (at most MAX_EVENT_BLOB of
    output each); ``close`` hangs up, which kills the process."""

    def __init__(self, conn: _Connection, request: wire.Attach):
        self._conn, self._request = conn, request
        self.ended = False

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), wire.CHUNK):
            await self._conn.send(None, view[start:start + wire.CHUNK])

    async def close_stdin(self) -> None:
        await self._conn.send(None, b"")

    async def receive(self) -> tuple[str, bytes] | wire.AttachReply:
        try:
            frame, blob = await self._conn.receive()
        except ServerGone as exc:
            self.ended = True
            raise WorkspaceUnavailable(f"the attached process's connection broke: {exc}") from None
        if frame is None:
            raise HostileReply("the container server sent a body chunk to an attached process")
        if "ok" in frame:
            self.ended = True
            return ServerRuntime._parse(self._request, frame)
        stream = frame.get("stream")
        if frame.get("event") != "output" or stream not in ("stdout", "stderr"):
            raise HostileReply("the container server sent an unexpected frame to an attached process")
        return stream, blob

    def close(self) -> None:
        self.ended = True
        self._conn.close()
