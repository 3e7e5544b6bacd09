"""A request/response channel between two processes of one machine, over a Unix socket.

Why: a Ray actor call costs about 0.65 ms each way on a small machine (the caller's core
worker, gRPC, the callee's core worker, a hand-over to the actor's event-loop thread, and
the same back); a frame on a Unix socket between two asyncio loops costs about 0.05 ms.
The fabric uses this for envelopes between actors of the same Ray node (actors.delivery)
and keeps the Ray call for everything else; the two paths end in the same ``deliver``.

Transport only: bodies are bytes; what they mean is the caller's business. One connection
per (event loop, socket) carries many requests at once, each numbered; a request whose
connection cannot be made, or breaks before its answer arrives, raises ChannelUnavailable
so the caller can take another path (it does not know whether the request was handled).

Frame: 8-byte request number, 4-byte body length (network order), the body. The socket's
directory is private to its user (0700): only processes of the same user can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import socket
import stat
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct("!QI")
MAX_BODY = 256 * 1024 * 1024
"""A larger length is a corrupt or hostile frame: the connection is closed."""
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
WRITE_BUFFER_HIGH = 1024 * 1024

Handler = Callable[[bytes], Awaitable[bytes]]


class ChannelUnavailable(ConnectionError):
    """No answer can come over this channel (nobody listens, or the connection broke)."""


class ChannelProtocolError(ConnectionError):
    """The peer sent something that is not a frame of this protocol."""


def socket_path(directory: str | os.PathLike[str], scope: str, name: str) -> Path:
    """Where ``name`` listens within ``scope`` (a Ray node id): short, whatever the name's length."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:24]
    path = Path(directory) / hashlib.sha256(scope.encode()).hexdigest()[:16] / f"{digest}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter directory")
    return path


def _private_directory(path: Path) -> None:
    """Make ``path`` (and parents) and insist it is ours alone: the socket's only access control."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(f"{path} must be a directory owned by uid {os.getuid()} with mode 0700")


def sweep_stale_sockets(directory: str | os.PathLike[str], *, older_than_s: float = 60.0) -> int:
    """Remove sockets nobody listens on any more (their actor was SIGKILLed, or its node is gone)
    and the emptied per-node directories; returns how many sockets went. Only what is older than
    ``older_than_s`` is looked at, so a socket between its bind and its listen is never taken.
    Blocking (a connect per socket, refused at once when nobody listens): run it in a thread."""
    base, removed = Path(directory), 0
    cutoff = time.time() - older_than_s
    try:
        node_dirs = [d for d in base.iterdir() if d.is_dir() and d.stat().st_uid == os.getuid()]
    except OSError:
        return 0
    for node_dir in node_dirs:
        try:
            entries = list(node_dir.iterdir())
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.suffix == ".sock" and entry.lstat().st_mtime < cutoff and not _listening(entry):
                    entry.unlink()
                    removed += 1
        with contextlib.suppress(OSError):  # not empty, or taken meanwhile: left alone
            if node_dir.stat().st_mtime < cutoff:
                node_dir.rmdir()
    return removed


def sweep_now_and_then(directory: str | os.PathLike[str], *, every_s: float = 600.0) -> int:
    """``sweep_stale_sockets`` unless some process of this machine swept within ``every_s``
    (a marker file's mtime says when): every server start may call it, few of them sweep."""
    marker = Path(directory) / ".swept"
    try:
        if time.time() - marker.stat().st_mtime < every_s:
            return 0
    except FileNotFoundError:
        pass
    except OSError:
        return 0
    with contextlib.suppress(OSError):
        marker.touch()
    return sweep_stale_sockets(directory)


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # busy or unknown: keep it
    finally:
        probe.close()
    return True


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    number, size = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_BODY:
        raise ChannelProtocolError(f"frame of {size} bytes (at most {MAX_BODY})")
    return number, await reader.readexactly(size)


def _frame(number: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"a body of {len(body)} bytes does not fit a frame (at most {MAX_BODY})")
    return HEADER.pack(number, len(body)) + body


class ChannelServer:
    """Answers each request with ``handler(body)``, requests of a connection concurrently."""

    def __init__(self, path: Path, handler: Handler, *, max_in_flight: int = 1000):
        self.path = path
        self._handler = handler
        self._slots = asyncio.Semaphore(max_in_flight)
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._answers: set[asyncio.Task] = set()
        self.served = 0

    async def start(self) -> ChannelServer:
        _private_directory(self.path.parent)
        # A socket left by a predecessor that died (names are unique while an actor lives).
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._connection, path=str(self.path))
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for task in self._answers:
            task.cancel()
        # Closing (not cancelling) a connection ends its read loop with an EOF: clients see it break.
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*self._connections, *self._answers, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._connections[me] = writer
        try:
            while True:
                number, body = await _read_frame(reader)
                await self._slots.acquire()  # a full server stops reading: the sender's writes wait
                answer = asyncio.get_running_loop().create_task(self._answer(number, body, writer))
                self._answers.add(answer)
                answer.add_done_callback(self._answers.discard)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if isinstance(exc, ChannelProtocolError):
                log.warning("channel %s: closing a connection: %s", self.path, exc)
        finally:
            self._connections.pop(me, None)
            writer.close()

    async def _answer(self, number: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            reply = _frame(number, await self._handler(body))
        except Exception:  # noqa: BLE001 - the handler encodes its own errors; this is a bug in it
            log.exception("channel %s: no answer to a request (handler failed)", self.path)
            writer.close()  # the client sees the connection break and takes its other path
            return
        finally:
            self._slots.release()
        self.served += 1
        if not writer.is_closing():
            writer.write(reply)


class ChannelClient:
    """One connection to a ChannelServer, made on first use and again after it breaks."""

    def __init__(self, path: Path):
        self.path = path
        self._numbers = itertools.count(1)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting = asyncio.Lock()

    async def request(self, body: bytes) -> bytes:
        if len(body) > MAX_BODY:  # not an error of the request: the caller's other path takes it
            raise ChannelUnavailable(f"{self.path}: a body of {len(body)} bytes is more than a frame holds")
        frame_number = next(self._numbers)
        frame = _frame(frame_number, body)
        writer = await self._connected()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[frame_number] = answer
        try:
            writer.write(frame)
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                await writer.drain()
            return await answer
        except ConnectionError as exc:
            raise ChannelUnavailable(f"{self.path}: {exc}") from exc
        finally:
            self._pending.pop(frame_number, None)

    async def _connected(self) -> asyncio.StreamWriter:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            return writer
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError as exc:  # no such socket, nobody listening, no permission
                raise ChannelUnavailable(f"{self.path}: {exc}") from exc
            self._writer = writer
            asyncio.get_running_loop().create_task(self._read_answers(reader, writer), name=f"channel:{self.path}")
            return writer

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason: BaseException = ChannelUnavailable(f"{self.path}: connection closed")
        try:
            while True:
                number, body = await _read_frame(reader)
                answer = self._pending.get(number)
                if answer is not None and not answer.done():
                    answer.set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            reason = ChannelUnavailable(f"{self.path}: connection lost ({type(exc).__name__})")
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            # Requests written on this connection and not answered: the caller decides what next.
            for answer in list(self._pending.values()):
                if not answer.done():
                    answer.set_exception(reason)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ChannelPool:
    """Clients by socket path and event loop (streams belong to the loop that made them);
    bounded: the least recently used client is closed when ``max_clients`` are open."""

    def __init__(self, max_clients: int = 1024) -> None:
        self._clients: OrderedDict[tuple[int, Path], tuple[asyncio.AbstractEventLoop, ChannelClient]] = OrderedDict()
        self._max_clients = max_clients
        self.requests = 0
        self.unavailable = 0

    async def request(self, path: Path, body: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        key = (id(loop), path)
        entry = self._clients.get(key)
        if entry is None or entry[0] is not loop:  # an id reused by a newer loop
            entry = self._clients[key] = (loop, ChannelClient(path))
            while len(self._clients) > self._max_clients:
                _, (_, evicted) = self._clients.popitem(last=False)
                await evicted.close()
        else:
            self._clients.move_to_end(key)
        self.requests += 1
        try:
            return await entry[1].request(body)
        except ChannelUnavailable:
            self.unavailable += 1
            raise

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "unavailable": self.unavailable, "clients": len(self._clients)}
