"""A process attached to one connection: its stdin from the client's chunks, its output as events.

Stdlib only (ships into the container). One worker thread serves the attachment for its whole
life with one selector over the client socket and the process's pipes; nothing is buffered
without bound: the client is read only while less than ``MAX_STDIN_PENDING`` bytes wait for
the process to take them, and output goes out as it is read (a slow client slows the process).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time

import procs

MAX_STDIN_PENDING = 1 << 20
_READ = 65536


def attach(command: str, cwd: str, env: dict[str, str], grace: float, send, recv_frame, sock) -> dict:
    """Run ``command`` attached to ``sock`` until it exits; ``send(header, blob)`` sends a frame,
    ``recv_frame(sock)`` reads one. The client hanging up kills the process (ClientGone)."""
    proc = procs.spawn(command, cwd, env, stdin=True)
    try:
        send({"event": "started", "pid": proc.pid}, b"")  # the client waits for this (or a failure)
        return _serve(proc, grace, send, recv_frame, sock)
    finally:
        procs.unregister(proc.pid)
        procs._sweep(proc.pid)
        procs.sweep_strays()


def _serve(proc, grace: float, send, recv_frame, sock) -> dict:
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    pending = bytearray()
    stdin_open, close_asked = True, False
    watching = {"client": False, "stdin": False}
    open_pipes, exited_at = 2, None

    def watch(name: str, fileobj, events: int, wanted: bool) -> None:
        if wanted and not watching[name]:
            selector.register(fileobj, events, name)
        elif watching[name] and not wanted:
            selector.unregister(fileobj)
        watching[name] = wanted

    try:
        while True:
            if close_asked and stdin_open and not pending:
                proc.stdin.close()
                stdin_open = False
            watch("stdin", stdin_fd, selectors.EVENT_WRITE, stdin_open and bool(pending))
            watch("client", sock, selectors.EVENT_READ, len(pending) < MAX_STDIN_PENDING)
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and (not open_pipes or now - exited_at > procs._LINGER):
                break  # exited, output drained (or held open by a child it left: that one is swept)
            for key, _ in selector.select(timeout=0.05 if exited_at is None else procs._LINGER):
                if key.data == "client":
                    header, blob = recv_frame(sock)  # EOFError when the client hung up
                    if header is not None:
                        raise procs.ClientGone  # a request while attached: the client is broken
                    if not blob:
                        close_asked = True
                    elif stdin_open:
                        pending += blob
                elif key.data == "stdin":
                    try:
                        written = os.write(stdin_fd, pending[:_READ])
                        del pending[:written]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, OSError):  # it closed its stdin: what is left is dropped
                        pending.clear()
                        close_asked = True
                else:
                    chunk = os.read(key.fd, _READ)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    send({"event": "output", "stream": key.data}, chunk)
    except BaseException:
        procs.kill_tree(proc, 0)
        raise
    finally:
        selector.close()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
    if proc.poll() is None:
        procs.kill_tree(proc, grace)
    return {"exit_code": procs.shell_code(proc.wait())}
