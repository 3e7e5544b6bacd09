"""The container server: a small persistent server inside the container, on a unix socket.

The sandbox actor talks to it instead of paying for a ``docker exec`` per command (tens of ms)
— a round trip here is a few hundred microseconds plus the command itself. Stdlib only; copied
into the container at creation time and started with one ``docker exec``.

Requests and replies are the dataclasses of ``wire.py`` (shared with the host), framed as it
describes. A connection carries any number of requests, one at a time; the client opens
several connections for concurrency. ``Exec(stream=True)`` answers with ``output`` frames
(blob = bytes) before its final frame; ``Attach`` makes the connection a process's stdio until
it exits (attach.py); a request with ``ack: true`` first gets an ``accepted``
frame, so the client knows whether a broken connection may have run it. Uploads (write,
tar_extract) and downloads (read, tar_create) travel as chunks, never whole in memory. Every
final frame has ``ok``; failures carry ``error: {kind, message}``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import queue
import secrets
import selectors
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import attach  # noqa: E402
import files  # noqa: E402
import procs  # noqa: E402
import tars  # noqa: E402
import wire  # noqa: E402

HEADER = wire.HEADER
MAX_JSON = 1 << 20  # requests are small: bodies come as chunks
MAX_UPLOAD = 64 << 30
SOURCES = ("attach.py", "files.py", "procs.py", "server.py", "tars.py", "wire.py")


def _source_digest() -> str:
    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in SOURCES:
        with open(os.path.join(here, name), "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[dict | None, bytes]:
    """A frame: (header, blob), or (None, blob) for a chunk of a streamed body."""
    json_len, blob_len = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if json_len > MAX_JSON or blob_len > wire.CHUNK:
        raise EOFError
    header = json.loads(_recv_exact(sock, json_len)) if json_len else None
    if header is not None and not isinstance(header, dict):
        raise EOFError
    return header, _recv_exact(sock, blob_len) if blob_len else b""


class Channel:
    """One connection; frames are sent whole under a lock (output events come from a reader)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, header: dict | None, blob: bytes = b"") -> None:
        raw = json.dumps(header, separators=(",", ":")).encode() if header is not None else b""
        with self.lock:
            self.sock.sendall(HEADER.pack(len(raw), len(blob)) + raw)
            if blob:
                self.sock.sendall(blob)


class BodyReader:
    """The chunks of an uploaded body as a read-only file, up to ``limit`` bytes."""

    def __init__(self, sock: socket.socket, limit: int = MAX_UPLOAD):
        self.sock, self.limit, self.total, self.done, self.buffer = sock, limit, 0, False, b""

    def _next(self) -> bytes:
        header, blob = recv_frame(self.sock)
        if header is not None:
            raise EOFError  # a new request before the body ended: the client is broken
        if not blob:
            self.done = True
        self.total += len(blob)
        if self.total > self.limit:
            raise files.OpError("invalid", f"upload larger than {self.limit} bytes")
        return blob

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buffer) < size):
            self.buffer += self._next()
        if size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def drain(self) -> None:
        """Read to the end of the body, so the connection is ready for the next request."""
        self.buffer = b""
        while not self.done:
            self._next()


class BodyWriter:
    """A write-only file whose bytes go out as chunks; ``close`` sends the final empty chunk."""

    def __init__(self, channel: Channel):
        self.channel, self.buffer = channel, bytearray()

    def write(self, data) -> int:
        self.buffer += data
        while len(self.buffer) >= wire.CHUNK:
            self.channel.send(None, bytes(self.buffer[:wire.CHUNK]))
            del self.buffer[:wire.CHUNK]
        return len(data)

    def close(self) -> None:
        if self.buffer:
            self.channel.send(None, bytes(self.buffer))
            self.buffer.clear()
        self.channel.send(None, b"")


class ContainerServer:
    def __init__(self, secret: bytes):
        self.secret = secret
        self.background = procs.BackgroundTable()
        self.version = _source_digest()

    def _cwd(self, cwd: str) -> str:
        return files.working_dir(cwd)

    def handle(self, channel: Channel, req: wire.Request, body: BodyReader | None):
        if isinstance(req, wire.Ping):
            return wire.PingReply(pid=os.getpid(), version=self.version)
        if isinstance(req, wire.Exec):
            on_output = None
            if req.stream:
                def on_output(stream: str, data: bytes) -> None:
                    channel.send({"event": "output", "stream": stream}, data)
            result = procs.run(req.command, self._cwd(req.cwd), req.env, req.timeout, req.max_output,
                               req.grace, on_output, client=channel.sock)
            return wire.ExecReply(**result)
        if isinstance(req, wire.Attach):
            return wire.AttachReply(**attach.attach(req.command, self._cwd(req.cwd), req.env, req.grace,
                                                    channel.send, recv_frame, channel.sock))
        if isinstance(req, wire.BgStart):
            return wire.ProcessReply(**self.background.start(req.command, self._cwd(req.cwd), req.env, req.max_output))
        if isinstance(req, wire.BgPoll | wire.BgKill):
            try:
                job = self.background.get(req.process_id)
            except KeyError:
                raise files.OpError("not_found", f"no background process {req.process_id!r}") from None
            if isinstance(req, wire.BgPoll):
                polled = job.poll(req.stdout_offset, req.stderr_offset)
                return wire.PollReply(**(polled | {"process": wire.ProcessReply(**polled["process"])}))
            return wire.ProcessReply(**job.kill(req.grace))
        if isinstance(req, wire.BgList):
            return wire.ProcessListReply(processes=[wire.ProcessReply(**p) for p in self.background.list()])
        if isinstance(req, wire.Read):
            files.read(req.path, req.max_bytes, BodyWriter(channel))
            return wire.Empty()
        if isinstance(req, wire.Write):
            return wire.FileReply(**files.write(req.path, body, req.mode))
        if isinstance(req, wire.Stat):
            return wire.FileReply(**files.stat_path(req.path))
        if isinstance(req, wire.ListDir):
            return wire.ListReply(entries=[wire.FileReply(**e) for e in files.listing(req.path, req.recursive)])
        if isinstance(req, wire.Delete):
            files.delete(req.path, req.recursive)
            return wire.Empty()
        if isinstance(req, wire.Mkdir):
            return wire.FileReply(**files.mkdir(req.path, req.parents, req.exist_ok))
        if isinstance(req, wire.Move):
            return wire.FileReply(**files.move(req.src, req.dst, req.overwrite))
        if isinstance(req, wire.Copy):
            return wire.FileReply(**files.copy(req.src, req.dst, req.overwrite))
        if isinstance(req, wire.TarCreate):
            tars.tar_create(req.paths, BodyWriter(channel))
            return wire.Empty()
        if isinstance(req, wire.TarExtract):
            return wire.CountReply(count=tars.tar_extract(req.dest, body, req.clear))
        if isinstance(req, wire.Manifest):
            return wire.ManifestReply(entries={k: wire.ManifestEntry(**v) for k, v in tars.manifest(req.path).items()})
        if isinstance(req, wire.DiskUsage):
            return wire.DiskUsageReply(bytes=files.disk_usage(req.path))
        raise files.OpError("invalid", f"unknown operation {req.op!r}")  # pragma: no cover

    def serve_one(self, conn: Connection) -> bool:
        """Read and answer one request on ``conn``; False when the connection must close."""
        try:
            header, _blob = recv_frame(conn.sock)
        except (EOFError, OSError, ValueError):
            return False
        if header is None:
            return False  # a chunk where a request belongs: the client is broken
        if conn.stage != "ready":
            return self._handshake(conn, header)
        channel, body = conn.channel, None
        try:
            ack = header.pop("ack", False) is True
            req = wire.parse_request(header)
            if isinstance(req, wire.Hello | wire.Prove):
                raise wire.WireError("already authenticated")
            body = BodyReader(conn.sock) if req.upload else None
            if ack:
                # Tells the client the request got here: if the connection breaks before
                # this frame, retrying cannot run a command twice.
                channel.send({"event": "accepted"})
            reply = {"ok": True, **wire.to_dict(self.handle(channel, req, body))}
        except files.OpError as exc:
            reply = {"ok": False, "error": {"kind": exc.kind, "message": exc.message}}
        except procs.Exhausted as exc:
            reply = {"ok": False, "error": {"kind": "exhausted", "message": str(exc)}}
        except (wire.WireError, KeyError, TypeError, ValueError) as exc:
            reply = {"ok": False, "error": {"kind": "invalid", "message": f"bad request: {exc}"}}
        except (BrokenPipeError, ConnectionResetError, EOFError, procs.ClientGone):
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                reply = {"ok": False, "error": {"kind": "no_space", "message": f"no space left in the workspace (its disk quota is full): {exc.filename or ''}"}}
            elif exc.errno == errno.E2BIG:
                reply = {"ok": False, "error": {"kind": "invalid", "message": "the command is too long for the kernel (argument list too long)"}}
            else:
                reply = {"ok": False, "error": {"kind": "os", "message": f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")}}
        except Exception as exc:  # keep serving: one bad request must not kill the container server
            reply = {"ok": False, "error": {"kind": "internal", "message": f"{type(exc).__name__}: {exc}"}}
        try:
            if body is not None:
                body.drain()  # a failed upload's remaining chunks, so the next frame is a request
            channel.send(reply)
        except (OSError, EOFError, files.OpError):
            return False
        return True

    def _handshake(self, conn: Connection, header: dict) -> bool:
        """Hello (the server proves it knows the secret), then Prove (the client does)."""
        try:
            req = wire.parse_request(header)
        except wire.WireError:
            return False
        try:
            if conn.stage == "hello" and isinstance(req, wire.Hello):
                conn.client_nonce, conn.server_nonce = req.nonce[:64], secrets.token_hex(16)
                mine = wire.proof(self.secret, "server", conn.client_nonce, conn.server_nonce)
                conn.channel.send({"ok": True, "nonce": conn.server_nonce, "proof": mine})
                conn.stage = "prove"
                return True
            if conn.stage == "prove" and isinstance(req, wire.Prove):
                theirs = wire.proof(self.secret, "client", conn.server_nonce, conn.client_nonce)
                if not hmac.compare_digest(theirs, req.proof):
                    return False
                conn.channel.send({"ok": True})
                conn.stage = "ready"
                return True
        except OSError:
            return False
        return False


class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.channel = Channel(sock)
        self.stage = "hello"
        self.client_nonce = self.server_nonce = ""


class Dispatcher:
    """Pre-started worker threads serve one request at a time; between requests, connections
    wait in one selector. Threads are started ahead (and more only when all are busy), so a
    workspace that used up its pids cannot stop the server from answering."""

    def __init__(self, server: ContainerServer, listener: socket.socket, workers: int = 8, max_workers: int = 64):
        self.server, self.listener = server, listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "listen")
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.jobs: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.returned: list[Connection] = []
        self.idle = self.total = 0
        self.max_workers = max_workers
        for _ in range(workers):
            self._add_worker()

    def _add_worker(self) -> bool:
        try:
            threading.Thread(target=self._work, name="worker", daemon=True).start()
        except RuntimeError:
            return False  # no pid left for a thread: the request waits for a busy worker
        with self.lock:
            self.idle += 1
            self.total += 1
        return True

    def _work(self) -> None:
        while True:
            conn = self.jobs.get()
            with self.lock:
                self.idle -= 1
            keep = self.server.serve_one(conn)
            with self.lock:
                self.idle += 1
                if keep:
                    self.returned.append(conn)
            if keep:
                os.write(self.wake_w, b"x")
            else:
                with contextlib.suppress(OSError):
                    conn.sock.close()

    def serve_forever(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "listen":
                    try:
                        sock, _ = self.listener.accept()
                    except OSError:
                        continue
                    self.selector.register(sock, selectors.EVENT_READ, Connection(sock))
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    with self.lock:
                        back, self.returned = self.returned, []
                    for conn in back:
                        self.selector.register(conn.sock, selectors.EVENT_READ, conn)
                else:
                    conn = key.data
                    self.selector.unregister(conn.sock)
                    self.jobs.put(conn)
                    with self.lock:
                        short = self.idle <= 1 and self.total < self.max_workers
                    if short:
                        self._add_worker()  # keep one spare worker for pings and handshakes


def _take_over(lock_path: str) -> int:
    """Become the only container server: kill a previous one (its pid is in the lock file) and lock."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            old = int(os.pread(fd, 32, 0).decode().strip() or 0)
            if old > 1:
                os.kill(old, signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


SECRET_ENV = "QUADRACODE_SERVER_SECRET"


def _ids(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    uid, _, gid = text.partition(":")
    return int(uid), int(gid or uid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Quadracode container server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--workspace-root", default="/workspace", help="the folder exec and paths are relative to")
    parser.add_argument("--shared-root", default="/shared", help="the folder shared between workspaces")
    parser.add_argument("--run-as", help="UID:GID commands run as, and owner of the files made (server started as root)")
    parser.add_argument("--socket-owner", type=int, help="uid given the socket (mode 0600): only it may connect")
    args = parser.parse_args(argv)
    # The secret of this start comes in the environment (never the command line, which anyone
    # in the container can read) and leaves it at once: commands get an environment of their own.
    secret = os.environ.pop(SECRET_ENV, "").encode()
    if len(secret) < 32:
        sys.exit(f"container server: {SECRET_ENV} must hold the start's secret (32+ characters)")
    run_as = _ids(args.run_as)
    files.configure(args.workspace_root, args.shared_root, run_as)
    procs.configure(run_as)
    os.umask(0o022)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    lock_fd = _take_over(args.socket + ".lock")
    tmp = f"{args.socket}.{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    if args.socket_owner is not None:
        os.chown(tmp, args.socket_owner, -1)
        os.chmod(tmp, 0o600)
    else:
        os.chmod(tmp, 0o666)  # a local deployment: the folder it lives in is private
    listener.listen(128)
    procs.pump()  # started now, while pids are to be had
    dispatcher = Dispatcher(ContainerServer(secret), listener)
    os.replace(tmp, args.socket)  # atomic: clients never see a missing or half-made socket
    try:
        dispatcher.serve_forever()
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    main()
