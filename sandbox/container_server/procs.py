"""Processes of the in-container server: exec with hard timeouts and output caps, background jobs.

Stdlib only (runs under the container's python3). Every command starts in a new session so
that its whole tree can be found again; a timeout sends SIGTERM to the tree, waits a grace
period, then SIGKILLs whatever is left, including children that changed their process group.

When the server runs as another user than the commands (``configure(run_as=...)``, as in a
container), every command runs as the sandbox user and, when an exec returns, every process of
that user that belongs neither to a running exec nor to a background job is killed: a daemon
that detached itself (``setsid``, a double fork, re-parented to init) cannot outlive its exec.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/home/workspace",
    "LANG": "C.UTF-8",
    "USER": "workspace",
    "SHELL": "/bin/bash",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_LINGER = 0.2  # after the command exits, how long to wait for children still holding its pipes
RUN_AS: tuple[int, int] | None = None
"""(uid, gid) commands run as; None runs them as the server's own user (a local deployment)."""
_OOM_FIRST = 'echo 1000 > /proc/self/oom_score_adj 2>/dev/null; exec /bin/bash -c "$0"'
"""Commands are the OOM killer's first choice, never the server sharing their memory limit."""

_registry_lock = threading.RLock()
_registered: set[int] = set()
"""Root pids of the running execs and background jobs: what a stray sweep keeps."""


def configure(run_as: tuple[int, int] | None) -> None:
    global RUN_AS
    RUN_AS = run_as


class Exhausted(Exception):
    """The workspace's processes fill its pids limit: no command can start now."""


def _proc_table(with_uid: bool = False) -> list[tuple[int, int, int, int, int]]:
    """(pid, ppid, pgid, sid, uid) of every live (not zombie) process visible in the container
    (uid -1 unless asked: it is read from ``status``, which a process cannot hide, unlike the
    owner of its /proc folder)."""
    rows = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode("ascii", "replace")
            uid = -1
            if with_uid:
                with open(f"/proc/{name}/status", "rb") as fh:
                    for line in fh:
                        if line.startswith(b"Uid:"):
                            uid = int(line.split()[1])
                            break
        except (OSError, ValueError):
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue  # already dead, only waiting to be reaped
        rows.append((int(name), int(fields[1]), int(fields[2]), int(fields[3]), uid))
    return rows


def tree_of(root: int, table=None) -> set[int]:
    """The root, its descendants, and anything still in its process group or session (live only)."""
    table = table if table is not None else _proc_table()
    members = {pid for pid, _ppid, pgid, sid, _uid in table if pid == root or pgid == root or sid == root}
    changed = True
    while changed:
        changed = False
        for pid, ppid, _pgid, _sid, _uid in table:
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    members.discard(os.getpid())
    return members


def _signal_tree(root: int, sig: int) -> int:
    """Signal the tree; returns how many live members it had (0: nothing left)."""
    sent = 0
    try:
        os.killpg(root, sig)  # atomic for the group: a fork bomb cannot outrun it
    except (ProcessLookupError, PermissionError):
        pass
    for pid in tree_of(root):
        try:
            os.kill(pid, sig)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def kill_tree(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the tree, then SIGKILL it after ``grace`` seconds, until nothing is left."""
    _signal_tree(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _sweep(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _sweep(root: int, deadline_s: float = 10.0) -> None:
    """SIGKILL the tree until nothing of it is left (a fork bomb keeps forking while it dies)."""
    end = time.monotonic() + deadline_s
    while _signal_tree(root, signal.SIGKILL) and time.monotonic() < end:
        time.sleep(0.005)


def spawn(command: str, cwd: str, env: dict[str, str], *, stdin: bool = False) -> subprocess.Popen:
    """Start ``command`` in a new session (as the sandbox user when configured), registered
    so that a stray sweep keeps it until ``unregister``; ``stdin``: give it a pipe to write to."""
    for key in env:
        if not key or "=" in key or "\x00" in key or "\x00" in env[key]:
            raise ValueError(f"invalid environment variable name {key!r}")
    full_env = dict(BASE_ENV, PWD=cwd, **env)
    argv, extra = ["/bin/bash", "-c", command], {}
    if RUN_AS is not None:
        argv = ["/bin/bash", "-c", _OOM_FIRST, command]
        extra = {"user": RUN_AS[0], "group": RUN_AS[1], "extra_groups": []}
    with _registry_lock:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=full_env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True, **extra,
            )
        except BlockingIOError:
            raise Exhausted("the workspace's processes fill its pids limit; no command can start "
                            "until some end (kill a background job, or wait for the exec that forks)") from None
        _registered.add(proc.pid)
    return proc


def unregister(pid: int) -> None:
    with _registry_lock:
        _registered.discard(pid)


def sweep_strays(deadline_s: float = 10.0) -> int:
    """SIGKILL every process of the sandbox user outside the trees of running execs and
    background jobs, until none is left (a fork bomb refills while it dies: stop them first)."""
    if RUN_AS is None:
        return 0
    end = time.monotonic() + deadline_s
    killed = 0
    while time.monotonic() < end:
        with _registry_lock:
            table = _proc_table(with_uid=True)
            keep: set[int] = set()
            for root in _registered:
                keep |= tree_of(root, table)
            victims = [pid for pid, _ppid, _pgid, _sid, uid in table
                       if uid == RUN_AS[0] and pid not in keep and pid > 1]
        if not victims:
            return killed
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: a stopped process forks no more
            for pid in victims:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        killed += len(victims)
    return killed


def shell_code(code: int | None) -> int | None:
    """Killed by signal N reads 128+N, as in a shell (an OOM kill is 137)."""
    return None if code is None else (128 - code if code < 0 else code)


class _Capped:
    """Keeps the first ``limit`` bytes of a stream and remembers whether more came."""

    def __init__(self, limit: int):
        self.limit, self.data, self.truncated = limit, bytearray(), False

    def add(self, chunk: bytes) -> bytes:
        room = self.limit - len(self.data)
        kept = chunk[:max(room, 0)]
        self.data += kept
        if len(chunk) > len(kept):
            self.truncated = True
        return kept


class ClientGone(Exception):
    """The client closed its connection while its command ran."""


def run(command: str, cwd: str, env: dict[str, str], timeout: float, max_output: int,
        grace: float, on_output=None, client=None) -> dict:
    """Run to completion or timeout. ``on_output(stream, bytes)`` sees output as it arrives;
    ``client`` (a socket) is watched so that a client that hangs up kills the command."""
    started = time.monotonic()
    proc = spawn(command, cwd, env)
    try:
        return _run(proc, started, timeout, max_output, grace, on_output, client)
    finally:
        unregister(proc.pid)
        # Whatever the command left running dies with it, so an exec can never outlive its own
        # timeout (a fork bomb, a stray `cmd &`, a daemon): long-lived jobs use bg_start.
        _sweep(proc.pid)
        sweep_strays()


def _run(proc: subprocess.Popen, started: float, timeout: float, max_output: int, grace: float,
         on_output, client) -> dict:
    outputs = {"stdout": _Capped(max_output), "stderr": _Capped(max_output)}
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    if client is not None:
        selector.register(client, selectors.EVENT_READ, "client")
    open_pipes = 2
    deadline = started + timeout
    timed_out = False
    exited_at = None
    try:
        while open_pipes:
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _LINGER:
                break  # a background child keeps the pipe open; the command itself is done
            wait = min(deadline - now, 0.05 if exited_at is None else _LINGER)
            for key, _ in selector.select(timeout=wait):
                if key.data == "client":
                    # One request at a time per connection: readable now can only mean EOF.
                    raise ClientGone
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                kept = outputs[key.data].add(chunk)
                if kept and on_output is not None:
                    on_output(key.data, kept)
    except BaseException:
        kill_tree(proc, 0)  # the client went away mid-stream: never leave the command running
        raise
    finally:
        selector.close()
    if timed_out:
        kill_tree(proc, grace)
    else:
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return {
        "exit_code": None if timed_out else shell_code(proc.returncode),
        "stdout": outputs["stdout"].data.decode("utf-8", "replace"),
        "stderr": outputs["stderr"].data.decode("utf-8", "replace"),
        "duration_ms": (time.monotonic() - started) * 1000,
        "timed_out": timed_out,
        "truncated": outputs["stdout"].truncated or outputs["stderr"].truncated,
    }


class _Tail:
    """Keeps the last ``limit`` bytes of a long-running stream; offsets count from its start."""

    def __init__(self, limit: int):
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    @property
    def end(self) -> int:
        return self.dropped + len(self.data)

    def since(self, offset: int) -> tuple[bytes, bool]:
        """Bytes from ``offset`` on, and whether some of them were already dropped."""
        start = max(offset - self.dropped, 0)
        return bytes(self.data[start:]), offset < self.dropped


class _Pump:
    """One thread reading the output of every background job: a thread per job would need
    pids, which the workspace may have used up."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.pending: list[Background] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        threading.Thread(target=self._run, name="background-pump", daemon=True).start()

    def add(self, job: Background) -> None:
        with self.lock:
            self.pending.append(job)
        os.write(self.wake_w, b"x")

    def _run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                    with self.lock:
                        jobs, self.pending = self.pending, []
                    for job in jobs:
                        for name in job.outputs:
                            self.selector.register(getattr(job.proc, name), selectors.EVENT_READ, (job, name))
                    continue
                job, name = key.data
                try:
                    chunk = os.read(key.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()
                    job.pipe_closed()
                    continue
                with job.lock:
                    job.outputs[name].add(chunk)


_pump: _Pump | None = None
_pump_lock = threading.Lock()


def pump() -> _Pump:
    """The background output pump, started on first use (the server starts it at once)."""
    global _pump
    with _pump_lock:
        if _pump is None:
            _pump = _Pump()
        return _pump


class Background:
    """One background process whose output is collected by the pump."""

    def __init__(self, command: str, cwd: str, env: dict[str, str], max_output: int):
        self.process_id = uuid.uuid4().hex[:12]
        self.command = command
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.killed = False
        self.proc = spawn(command, cwd, env)
        self.outputs = {"stdout": _Tail(max_output), "stderr": _Tail(max_output)}
        self.lock = threading.Lock()
        self.open_pipes = 2
        self.drained = threading.Event()
        pump().add(self)

    def pipe_closed(self) -> None:
        with self.lock:
            self.open_pipes -= 1
            if not self.open_pipes:
                self.drained.set()

    def describe(self) -> dict:
        code = self.proc.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.time()
        status = "running" if code is None else ("killed" if self.killed else "exited")
        return {"process_id": self.process_id, "command": self.command, "pid": self.proc.pid,
                "status": status, "exit_code": shell_code(code), "started_at": self.started_at, "ended_at": self.ended_at}

    def poll(self, stdout_offset: int, stderr_offset: int) -> dict:
        process = self.describe()  # the status first: an "exited" must come with all the output
        if process["status"] != "running":
            # Ended: let the pump read what it wrote last (a child still holding the pipes only
            # delays this, a little).
            self.drained.wait(timeout=0.5)
        with self.lock:
            out, out_lost = self.outputs["stdout"].since(stdout_offset)
            err, err_lost = self.outputs["stderr"].since(stderr_offset)
            result = {
                "process": process,
                "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
                "stdout_offset": self.outputs["stdout"].end, "stderr_offset": self.outputs["stderr"].end,
                "truncated": out_lost or err_lost,
            }
        return result

    def kill(self, grace: float) -> dict:
        if self.proc.poll() is None:
            self.killed = True
            kill_tree(self.proc, grace)
        unregister(self.proc.pid)
        return self.describe()


class BackgroundTable:
    def __init__(self):
        self.jobs: dict[str, Background] = {}
        self.lock = threading.Lock()

    def start(self, command: str, cwd: str, env: dict[str, str], max_output: int) -> dict:
        job = Background(command, cwd, env, max_output)
        with self.lock:
            self.jobs[job.process_id] = job
        return job.describe()

    def get(self, process_id: str) -> Background:
        with self.lock:
            job = self.jobs.get(process_id)
        if job is None:
            raise KeyError(process_id)
        return job

    def list(self) -> list[dict]:
        with self.lock:
            jobs = list(self.jobs.values())
        return [job.describe() for job in jobs]
