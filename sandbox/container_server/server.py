"""The container server: a small persistent server inside the container, on a unix socket.

The sandbox actor talks to it instead of paying for a ``docker exec`` per command (tens of ms)
— a round trip here is a few hundred microseconds plus the command itself. Stdlib only; copied
into the container at creation time and started with one ``docker exec``.

Wire format, both directions: ``>IQ`` header (JSON length, blob length), the JSON, the blob.
A connection carries any number of requests, one at a time; the client opens several
connections for concurrency. ``exec`` with ``stream: true`` answers with ``output`` frames
(blob = bytes) before its final frame; a request with ``ack: true`` first gets an ``accepted``
frame, so the client knows whether a broken connection may have run it. Every final frame has ``ok``; failures carry
``error: {kind, message}``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import files  # noqa: E402
import procs  # noqa: E402

HEADER = struct.Struct(">IQ")
MAX_JSON = 64 << 20
MAX_BLOB = 4 << 30


def _source_digest() -> str:
    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("files.py", "procs.py", "server.py"):
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


def recv_frame(sock: socket.socket) -> tuple[dict, bytes]:
    json_len, blob_len = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if json_len > MAX_JSON or blob_len > MAX_BLOB:
        raise EOFError
    header = json.loads(_recv_exact(sock, json_len))
    return header, _recv_exact(sock, blob_len) if blob_len else b""


def send_frame(sock: socket.socket, header: dict, blob: bytes = b"") -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(HEADER.pack(len(raw), len(blob)) + raw + blob)


class ContainerServer:
    def __init__(self):
        self.background = procs.BackgroundTable()
        self.version = _source_digest()

    def _cwd(self, cwd: str) -> str:
        real = files.resolve(cwd or ".", roots=(files.WORKSPACE,))
        if not os.path.isdir(real):
            raise files.OpError("not_found", f"working directory {cwd!r} does not exist")
        return real

    def handle(self, sock: socket.socket, req: dict, blob: bytes) -> tuple[dict, bytes]:
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "version": self.version}, b""
        if op == "exec":
            cwd = self._cwd(req.get("cwd", "."))
            on_output = None
            if req.get("stream"):
                def on_output(stream: str, data: bytes) -> None:
                    send_frame(sock, {"event": "output", "stream": stream}, data)
            result = procs.run(req["command"], cwd, req.get("env") or {}, float(req["timeout"]),
                               int(req["max_output"]), float(req.get("grace", 2.0)), on_output, client=sock)
            return result, b""
        if op == "bg_start":
            cwd = self._cwd(req.get("cwd", "."))
            return self.background.start(req["command"], cwd, req.get("env") or {}, int(req["max_output"])), b""
        if op in ("bg_poll", "bg_kill"):
            try:
                job = self.background.get(req["process_id"])
            except KeyError:
                raise files.OpError("not_found", f"no background process {req['process_id']!r}") from None
            if op == "bg_poll":
                return job.poll(int(req.get("stdout_offset", 0)), int(req.get("stderr_offset", 0))), b""
            return job.kill(float(req.get("grace", 2.0))), b""
        if op == "bg_list":
            return {"processes": self.background.list()}, b""
        if op == "read":
            return {}, files.read(req["path"])
        if op == "write":
            return files.write(req["path"], blob, req.get("mode")), b""
        if op == "stat":
            return files.stat_path(req["path"]), b""
        if op == "list":
            return {"entries": files.listing(req["path"], bool(req.get("recursive")))}, b""
        if op == "delete":
            files.delete(req["path"], bool(req.get("recursive")))
            return {}, b""
        if op == "mkdir":
            return files.mkdir(req["path"], bool(req.get("parents", True)), bool(req.get("exist_ok", True))), b""
        if op == "move":
            return files.move(req["src"], req["dst"], bool(req.get("overwrite"))), b""
        if op == "copy":
            return files.copy(req["src"], req["dst"], bool(req.get("overwrite"))), b""
        if op == "tar_create":
            return {}, files.tar_create(list(req["paths"]))
        if op == "tar_extract":
            return {"count": files.tar_extract(req["dest"], blob, bool(req.get("clear")))}, b""
        if op == "manifest":
            return {"entries": files.manifest(req.get("path", "."))}, b""
        if op == "disk_usage":
            return {"bytes": files.disk_usage(req.get("path", "."))}, b""
        raise files.OpError("invalid", f"unknown operation {op!r}")

    def serve_connection(self, sock: socket.socket) -> None:
        with sock:
            while True:
                try:
                    req, blob = recv_frame(sock)
                except (EOFError, OSError, ValueError):
                    return
                try:
                    if req.get("ack"):
                        # Tells the client the request got here: if the connection breaks before
                        # this frame, retrying cannot run a command twice.
                        send_frame(sock, {"event": "accepted"})
                    reply, out = self.handle(sock, req, blob)
                    reply["ok"] = True
                except files.OpError as exc:
                    reply, out = {"ok": False, "error": {"kind": exc.kind, "message": exc.message}}, b""
                except (KeyError, TypeError, ValueError) as exc:
                    reply, out = {"ok": False, "error": {"kind": "invalid", "message": f"bad request: {exc}"}}, b""
                except (BrokenPipeError, ConnectionResetError, procs.ClientGone):
                    return
                except OSError as exc:
                    reply, out = {"ok": False, "error": {"kind": "os", "message": f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")}}, b""
                except Exception as exc:  # keep serving: one bad request must not kill the container server
                    reply, out = {"ok": False, "error": {"kind": "internal", "message": f"{type(exc).__name__}: {exc}"}}, b""
                try:
                    send_frame(sock, reply, out)
                except OSError:
                    return


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Quadracode container server")
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    os.umask(0o022)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    lock_fd = _take_over(args.socket + ".lock")
    tmp = f"{args.socket}.{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    os.chmod(tmp, 0o666)  # the host side may be any user; the folder it lives in is private
    listener.listen(128)
    os.replace(tmp, args.socket)  # atomic: clients never see a missing or half-made socket
    server = ContainerServer()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=server.serve_connection, args=(conn,), daemon=True).start()
    os.close(lock_fd)


if __name__ == "__main__":
    main()
