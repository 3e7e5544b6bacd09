"""The conformance suites every workspace implementation runs, as LangGraph does it: a base set
for what graphs and tools use, and an extended set for the whole sandbox API.

- ``WorkspaceClientConformance`` (base): the ``WorkspaceClient`` operations (exec of simple
  commands, files, paths that escape, snapshot). The shipped in-memory ``FakeWorkspace`` runs it,
  and so does every real backend (the extended set includes it).
- ``SandboxConformance`` (extended): every operation of ``sandbox.protocol.WorkspaceOperations``
  with real processes: timeouts that kill whole trees, output caps, streams, background jobs,
  symlink escapes, tars, snapshots. The Docker deployment (actor and in-process service) and the
  local deployment run it.

Subclass one in a test module and provide a ``sandbox`` fixture returning the implementation
on a running workspace; for the extended set, say where its roots are and which uid its
commands run as when they differ from a workspace container's::

    class TestMyBackend(SandboxConformance):
        output_limit = 65536

        @pytest.fixture(scope="class")
        @classmethod
        async def sandbox(cls):
            ...

Tests share the workspace, so each works in a folder of its own.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid

import pytest

from quadracode_ray.interfaces.workspace import (
    ExecResult,
    FileInfo,
    PathEscapeError,
    SnapshotInfo,
    SnapshotNotFound,
    WorkspaceClient,
    WorkspaceConflict,
    WorkspaceInvalidRequest,
    WorkspacePathNotFound,
)
from sandbox.models import ExecOutput
from sandbox.protocol import WorkspaceOperations


def tar_of(entries: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``entries`` (path -> bytes), for upload tests."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


async def poll_until(probe, predicate, *, deadline_s: float = 10.0):
    """Call ``probe`` until ``predicate(result)`` holds or the deadline passes (no blind sleeps)."""
    end = time.monotonic() + deadline_s
    while True:
        result = await probe()
        if predicate(result) or time.monotonic() > end:
            return result
        await asyncio.sleep(0.05)


class WorkspaceClientConformance:
    """The base set: what a ``WorkspaceClient`` must do, with commands any implementation runs
    (``echo``, ``true``, ``false``, ``sleep``, ``cat``, ``python3`` on a file of ``print`` lines)."""

    @pytest.fixture
    def folder(self) -> str:
        return f"t-{uuid.uuid4().hex[:10]}"

    async def test_implements_workspace_client(self, sandbox):
        assert isinstance(sandbox, WorkspaceClient)
        assert sandbox.workspace_id

    async def test_exec_reports_output_and_exit_codes(self, sandbox):
        result = await sandbox.exec("echo hello")
        assert isinstance(result, ExecResult)
        assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (0, "hello\n", "", False)
        assert result.duration_ms >= 0
        assert (await sandbox.exec("true")).exit_code == 0
        assert (await sandbox.exec("false")).exit_code == 1

    async def test_exec_timeout_is_reported_not_raised(self, sandbox):
        result = await sandbox.exec("sleep 30", timeout=0.3)
        assert result.timed_out and result.exit_code is None

    async def test_exec_runs_files_written_to_the_workspace(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/hello.py", "print('hi')\nprint(3)\n")
        assert (await sandbox.exec(f"python3 {folder}/hello.py")).stdout == "hi\n3\n"
        assert (await sandbox.exec(f"cat {folder}/hello.py")).stdout == "print('hi')\nprint(3)\n"

    async def test_write_then_read_bytes_and_text(self, sandbox, folder):
        payload = bytes(range(256)) * 4
        info = await sandbox.write_file(f"{folder}/deep/blob.bin", payload)
        assert isinstance(info, FileInfo)
        assert (info.path, info.type, info.size) == (f"{folder}/deep/blob.bin", "file", len(payload))
        assert await sandbox.read_file(f"{folder}/deep/blob.bin") == payload
        await sandbox.write_file(f"{folder}/t.txt", "héllo")
        await sandbox.write_file(f"{folder}/t.txt", "héllo again")  # replaces
        assert await sandbox.read_file(f"{folder}/t.txt") == "héllo again".encode()

    async def test_missing_paths_raise_path_not_found(self, sandbox, folder):
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.read_file(f"{folder}/missing.txt")
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.delete(f"{folder}/missing.txt")

    async def test_list_files_top_level_and_recursive(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/a/x.txt", b"x")
        await sandbox.write_file(f"{folder}/b.txt", b"bb")
        top = sorted((e.path, e.type) for e in await sandbox.list_files(folder))
        assert top == [(f"{folder}/a", "dir"), (f"{folder}/b.txt", "file")]
        everything = {e.path: e for e in await sandbox.list_files(folder, recursive=True)}
        assert {f"{folder}/a/x.txt", f"{folder}/b.txt"} <= set(everything)
        assert everything[f"{folder}/b.txt"].size == 2

    async def test_delete_files_and_folders(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/one.txt", b"1")
        await sandbox.write_file(f"{folder}/sub/two.txt", b"2")
        await sandbox.delete(f"{folder}/one.txt")
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.read_file(f"{folder}/one.txt")
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.delete(f"{folder}/sub")  # a folder with files needs recursive=True
        assert await sandbox.read_file(f"{folder}/sub/two.txt") == b"2"
        await sandbox.delete(f"{folder}/sub", recursive=True)
        assert await sandbox.list_files(folder) == []

    async def test_paths_leaving_the_workspace_are_refused(self, sandbox, folder):
        attempts = [
            lambda: sandbox.read_file("../outside.txt"),
            lambda: sandbox.read_file(f"{folder}/../../outside.txt"),
            lambda: sandbox.read_file("/etc/passwd"),
            lambda: sandbox.write_file("../outside.txt", b"x"),
            lambda: sandbox.write_file("/tmp/outside.txt", b"x"),
            lambda: sandbox.list_files(".."),
            lambda: sandbox.delete("../outside.txt"),
        ]
        for attempt in attempts:
            with pytest.raises(PathEscapeError):
                await attempt()

    async def test_snapshot_describes_itself(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/kept.txt", b"kept")
        snap = await sandbox.snapshot("before")
        assert isinstance(snap, SnapshotInfo)
        assert (snap.label, snap.workspace_id) == ("before", sandbox.workspace_id)
        assert len(snap.sha256) == 64 and snap.size > 0 and snap.snapshot_id


class SandboxConformance(WorkspaceClientConformance):
    """The extended set: the whole sandbox API with real processes (and the base set too)."""

    output_limit: int = 1 << 20
    workspace_root: str = "/workspace"
    """The workspace's absolute path, as commands see it and the file API accepts it."""
    shared_root: str = "/shared"
    sandbox_uid: int = 1000
    """The uid commands run as."""

    async def test_implements_the_sandbox_protocol(self, sandbox):
        assert isinstance(sandbox, WorkspaceOperations)

    # --- exec -----------------------------------------------------------------------------------------
    async def test_exec_returns_output_and_exit_code(self, sandbox):
        result = await sandbox.exec("echo out; echo err >&2; exit 3")
        assert isinstance(result, ExecResult)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert not result.timed_out and not result.truncated and result.duration_ms > 0

    async def test_exec_runs_as_unprivileged_user_in_cwd_with_env(self, sandbox, folder):
        await sandbox.mkdir(f"{folder}/sub")
        result = await sandbox.exec('id -u; pwd; echo "$GREETING"', cwd=f"{folder}/sub", env={"GREETING": "hello"})
        assert result.stdout.split() == [str(self.sandbox_uid), f"{self.workspace_root}/{folder}/sub", "hello"]

    async def test_exec_refuses_cwd_outside_workspace(self, sandbox, folder):
        for cwd in ("..", "/etc", self.shared_root):
            with pytest.raises(PathEscapeError):
                await sandbox.exec("true", cwd=cwd)
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.exec("true", cwd=f"{folder}/missing")

    async def test_exec_rejects_bad_requests(self, sandbox):
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.exec("")
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.exec("true", timeout=0)
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.exec("true", env={"BAD=NAME": "x"})

    async def test_timeout_kills_the_whole_tree_even_when_sigterm_is_ignored(self, sandbox, folder):
        marker = f"qr-{folder}"
        command = f"trap '' TERM; (trap '' TERM; exec -a {marker} sleep 300) & exec -a {marker} sleep 300"
        result = await sandbox.exec(command, timeout=0.5)
        assert result.timed_out and result.exit_code is None
        left = await sandbox.exec(f"ps -eo args | grep -c '^{marker}' || true")
        assert left.stdout.strip() == "0"

    async def test_exec_leaves_nothing_running_when_it_returns(self, sandbox, folder):
        marker = f"qr-left-{folder}"
        result = await sandbox.exec(f"(exec -a {marker} sleep 300) & echo started")
        assert result.exit_code == 0 and result.stdout == "started\n"
        left = await sandbox.exec(f"ps -eo args | grep -c '^{marker}' || true")
        assert left.stdout.strip() == "0"

    async def test_output_is_capped_and_truncation_reported(self, sandbox):
        result = await sandbox.exec(f"head -c {self.output_limit * 3} /dev/zero | tr '\\0' x; echo done >&2")
        assert result.truncated
        assert len(result.stdout) == self.output_limit and set(result.stdout) == {"x"}
        assert result.stderr == "done\n" and result.exit_code == 0

    async def test_exec_is_binary_tolerant(self, sandbox):
        result = await sandbox.exec("printf 'a\\xffb'")
        assert result.stdout == "a\ufffdb"

    async def test_stream_yields_output_before_the_result(self, sandbox):
        items = [item async for item in sandbox.exec_stream("echo one; echo two >&2; echo three")]
        assert isinstance(items[-1], ExecResult) and items[-1].exit_code == 0
        outputs = [i for i in items[:-1] if isinstance(i, ExecOutput)]
        assert "".join(o.data for o in outputs if o.stream == "stdout") == "one\nthree\n"
        assert "".join(o.data for o in outputs if o.stream == "stderr") == "two\n"
        assert items[-1].stdout == "one\nthree\n"

    async def test_stream_delivers_the_first_output_while_the_command_runs(self, sandbox, folder):
        await sandbox.mkdir(folder)
        gate = f"{folder}/gate"
        stream = sandbox.exec_stream(f"echo started; while [ ! -e {gate} ]; do sleep 0.02; done; echo finished", timeout=20)
        first = await stream.__anext__()
        assert isinstance(first, ExecOutput) and first.data == "started\n"
        await sandbox.write_file(gate, b"")  # only now can the command finish
        rest = [item async for item in stream]
        assert rest[-1].exit_code == 0 and rest[-1].stdout == "started\nfinished\n"

    async def test_leaving_a_stream_early_kills_the_command(self, sandbox, folder):
        marker = f"qr-stream-{folder}"
        stream = sandbox.exec_stream(f"echo started; exec -a {marker} sleep 300", timeout=300)
        first = await stream.__anext__()
        assert first.data == "started\n"
        await stream.aclose()
        left = await poll_until(lambda: sandbox.exec(f"ps -eo args | grep -c '^{marker}' || true"),
                                lambda r: r.stdout.strip() == "0")
        assert left.stdout.strip() == "0"

    async def test_stream_honours_the_timeout(self, sandbox):
        items = [item async for item in sandbox.exec_stream("echo x; sleep 300", timeout=0.5)]
        assert items[-1].timed_out and items[-1].exit_code is None

    # --- background processes ---------------------------------------------------------------------
    async def test_background_process_runs_and_reports_output(self, sandbox):
        started = await sandbox.start_process("echo begin; echo oops >&2; exit 4")
        assert started.pid > 0
        done = await poll_until(lambda: sandbox.poll_process(started.process_id),
                                lambda out: out.process.status != "running")
        assert done.process.status == "exited" and done.process.exit_code == 4
        assert (done.stdout, done.stderr) == ("begin\n", "oops\n")
        again = await sandbox.poll_process(started.process_id, stdout_offset=done.stdout_offset,
                                           stderr_offset=done.stderr_offset)
        assert again.stdout == "" and again.stderr == ""
        assert started.process_id in {p.process_id for p in await sandbox.list_processes()}

    async def test_background_output_keeps_the_latest_part(self, sandbox):
        started = await sandbox.start_process(f"head -c {self.output_limit * 3} /dev/zero | tr '\\0' x; echo END")
        done = await poll_until(lambda: sandbox.poll_process(started.process_id),
                                lambda out: out.process.status != "running")
        assert done.truncated and done.stdout.endswith("xxxxEND\n")
        assert len(done.stdout) == self.output_limit and done.stdout_offset == self.output_limit * 3 + 4

    async def test_background_process_can_be_killed(self, sandbox):
        started = await sandbox.start_process("trap '' TERM; echo up; sleep 300")
        up = await poll_until(lambda: sandbox.poll_process(started.process_id), lambda out: "up" in out.stdout)
        assert up.process.status == "running"
        killed = await sandbox.kill_process(started.process_id)
        assert killed.status == "killed"
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.poll_process("no-such-process")

    # --- files ----------------------------------------------------------------------------------------------
    async def test_write_read_binary_and_text(self, sandbox, folder):
        payload = bytes(range(256)) * 10
        info = await sandbox.write_file(f"{folder}/deep/er/blob.bin", payload)
        assert (info.path, info.type, info.size) == (f"{folder}/deep/er/blob.bin", "file", len(payload))
        assert await sandbox.read_file(f"{folder}/deep/er/blob.bin") == payload
        await sandbox.write_file(f"{folder}/t.txt", "héllo")
        assert await sandbox.read_text(f"{folder}/t.txt") == "héllo"
        assert await sandbox.read_file(f"{self.workspace_root}/{folder}/t.txt") == "héllo".encode()

    async def test_write_replaces_atomically_and_leaves_no_temporaries(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/f", b"first")
        await sandbox.write_file(f"{folder}/f", b"second")
        assert await sandbox.read_file(f"{folder}/f") == b"second"
        assert [e.path for e in await sandbox.list_files(folder)] == [f"{folder}/f"]

    async def test_list_stat_mkdir_move_delete(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/a/one.txt", b"1")
        await sandbox.mkdir(f"{folder}/b")
        top = await sandbox.list_files(folder)
        assert [(e.path, e.type) for e in top] == [(f"{folder}/a", "dir"), (f"{folder}/b", "dir")]
        everything = await sandbox.list_files(folder, recursive=True)
        assert f"{folder}/a/one.txt" in [e.path for e in everything]
        assert (await sandbox.stat(f"{folder}/a/one.txt")).size == 1
        moved = await sandbox.move(f"{folder}/a/one.txt", f"{folder}/b/two.txt")
        assert moved.path == f"{folder}/b/two.txt"
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.stat(f"{folder}/a/one.txt")
        await sandbox.write_file(f"{folder}/a/x", b"x")
        with pytest.raises(WorkspaceConflict):
            await sandbox.move(f"{folder}/a/x", f"{folder}/b/two.txt")
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.delete(f"{folder}/b")
        await sandbox.delete(f"{folder}/b", recursive=True)
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.read_file(f"{folder}/b/two.txt")
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.read_file(f"{folder}/a")

    async def test_copy_between_workspace_and_shared(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/artefact.bin", b"\x00artefact")
        copied = await sandbox.copy(f"{folder}/artefact.bin", f"{self.shared_root}/{folder}/artefact.bin")
        assert copied.path == f"{self.shared_root}/{folder}/artefact.bin"
        back = await sandbox.copy(f"{self.shared_root}/{folder}", f"{folder}/from-shared")
        assert back.type == "dir"
        assert await sandbox.read_file(f"{folder}/from-shared/artefact.bin") == b"\x00artefact"

    async def test_path_escapes_are_refused_and_change_nothing(self, sandbox, folder):
        await sandbox.mkdir(folder)
        await sandbox.exec(f"ln -s /etc {folder}/etc-link && ln -s /etc/hostname {folder}/host-link")
        # What the attempts would have changed, were they let through (nothing else: on a shared
        # host, /tmp as a whole changes under other users' feet).
        probe = (f"md5sum /etc/hostname; ls -ld /home/workspace 2>&1; for p in /tmp/escape.txt /tmp/moved "
                 f"{self.workspace_root}/../escape.txt /etc/escape.txt /etc/newdir; do test -e $p && echo LEAK $p; done")
        before = await sandbox.exec(probe)
        attempts = [
            sandbox.read_file("../etc/passwd"),
            sandbox.read_file(f"{folder}/../../etc/passwd"),
            sandbox.read_file("/etc/passwd"),
            sandbox.read_file(f"{folder}/host-link"),
            sandbox.read_file(f"{folder}/etc-link/hostname"),
            sandbox.write_file("../escape.txt", b"x"),
            sandbox.write_file("/tmp/escape.txt", b"x"),
            sandbox.write_file(f"{folder}/etc-link/escape.txt", b"x"),
            sandbox.write_file(f"{folder}/host-link", b"x"),
            sandbox.list_files(f"{folder}/etc-link"),
            sandbox.mkdir(f"{folder}/etc-link/newdir"),
            sandbox.move(f"{folder}/host-link", "/tmp/moved"),
            sandbox.copy("/etc/hostname", f"{folder}/stolen"),
            sandbox.delete("/home/workspace", recursive=True),
        ]
        for attempt in attempts:
            with pytest.raises(PathEscapeError) as caught:
                await attempt
            assert "outside" in str(caught.value)
        after = await sandbox.exec(probe)
        assert after.stdout == before.stdout and "LEAK" not in after.stdout
        assert sorted(e.path for e in await sandbox.list_files(folder)) == [f"{folder}/etc-link", f"{folder}/host-link"]
        await sandbox.delete(f"{folder}/etc-link")  # the link itself may go; its target stays
        assert (await sandbox.exec("test -d /etc && echo yes")).stdout == "yes\n"

    async def test_tar_upload_and_download(self, sandbox, folder):
        count = await sandbox.upload_tar(tar_of({"x/a.txt": b"A", "b.bin": b"\x00\x01"}), folder)
        assert count == 2
        assert await sandbox.read_file(f"{folder}/x/a.txt") == b"A"
        data = await sandbox.download_tar([folder])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = set(tar.getnames())
        assert {f"{folder}/x/a.txt", f"{folder}/b.bin"} <= names

    async def test_malicious_tar_is_refused_before_anything_is_written(self, sandbox, folder):
        await sandbox.mkdir(folder)
        for evil in (tar_of({"ok.txt": b"1", "../../escape.txt": b"x"}), tar_of({"ok.txt": b"1", "/etc/evil": b"x"})):
            with pytest.raises(PathEscapeError):
                await sandbox.upload_tar(evil, folder)
        assert await sandbox.list_files(folder) == []
        with pytest.raises(WorkspaceInvalidRequest):
            await sandbox.upload_tar(b"not a tar at all", folder)

    # --- snapshots ---------------------------------------------------------------------------------------
    async def test_snapshot_diff_and_restore(self, sandbox, folder):
        await sandbox.write_file(f"{folder}/keep.txt", b"v1")
        await sandbox.write_file(f"{folder}/gone.txt", b"bye")
        snap = await sandbox.snapshot("before")
        assert snap.label == "before" and len(snap.sha256) == 64 and snap.size > 0
        assert snap.snapshot_id in [s.snapshot_id for s in await sandbox.list_snapshots()]
        await sandbox.write_file(f"{folder}/keep.txt", b"v2")
        await sandbox.delete(f"{folder}/gone.txt")
        await sandbox.write_file(f"{folder}/new.txt", b"new")
        diff = await sandbox.diff_snapshot(snap.snapshot_id)
        assert f"{folder}/new.txt" in diff.added
        assert f"{folder}/gone.txt" in diff.removed
        assert f"{folder}/keep.txt" in diff.modified
        await sandbox.restore_snapshot(snap.snapshot_id)
        assert await sandbox.read_file(f"{folder}/keep.txt") == b"v1"
        assert await sandbox.read_file(f"{folder}/gone.txt") == b"bye"
        with pytest.raises(WorkspacePathNotFound):
            await sandbox.stat(f"{folder}/new.txt")
        after = await sandbox.diff_snapshot(snap.snapshot_id)
        assert (after.added, after.removed, after.modified) == ([], [], [])
        with pytest.raises(SnapshotNotFound):
            await sandbox.restore_snapshot("../../etc")
