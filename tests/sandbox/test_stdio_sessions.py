"""Stdio sessions (sandbox/stdio.py): a long-lived process in a workspace whose stdin and stdout
the caller drives, over the container server's ``attach``. The local deployment runs the same
container server as Docker does (as a host subprocess), so these need neither Docker nor Ray;
tests/actors/test_mcp_tools.py drives them through the sandbox actor in a Docker workspace."""

from __future__ import annotations

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import (
    PathEscapeError,
    WorkspaceInvalidRequest,
    WorkspaceNotFound,
    WorkspacePathNotFound,
)
from sandbox import stdio
from sandbox.deployments.local import LocalDeployment, LocalDeploymentConfig
from sandbox.service import WorkspaceService
from tests.polling import eventually


@pytest.fixture
async def ws(tmp_path):
    service = WorkspaceService(LocalDeployment("stdio", LocalDeploymentConfig(root=tmp_path)),
                               Settings(_env_file=None, data_dir=tmp_path))
    await service.ensure()
    yield service
    await service.destroy(remove_volume=True)


async def _read_all(ws, session_id: str) -> tuple[bytes, object]:
    data = b""
    while True:
        out = await ws.read_stdio(session_id, timeout=10)
        data += out.stdout
        if out.exited:
            return data, out


async def test_a_process_reads_its_stdin_and_its_output_and_end_come_back(ws) -> None:
    session = await ws.open_stdio("while read -r line; do echo \"got $line\"; done; echo done >&2; exit 3")
    await ws.write_stdio(session.session_id, b"one\ntwo\n")
    first = await ws.read_stdio(session.session_id, timeout=10)
    assert first.stdout.startswith(b"got one") and not first.exited
    await ws.write_stdio(session.session_id, b"three\n", close=True)  # then its stdin closes: it ends
    rest, end = await _read_all(ws, session.session_id)
    assert first.stdout + rest == b"got one\ngot two\ngot three\n"
    assert (end.exit_code, end.stderr_tail.strip()) == (3, "done")
    with pytest.raises(WorkspaceNotFound):  # an ended session is gone once read to its end
        await ws.read_stdio(session.session_id)


async def test_big_input_and_output_flow_through_in_order(ws) -> None:
    session = await ws.open_stdio("cat")
    payload = bytes(range(256)) * 12_000  # 3 MiB, several chunks each way
    await ws.write_stdio(session.session_id, payload, close=True)
    data, end = await _read_all(ws, session.session_id)
    assert data == payload and end.exit_code == 0


async def test_a_flood_nobody_reads_is_held_to_the_buffer_bound(ws) -> None:
    session = await ws.open_stdio("yes flood")
    kept = ws.stdio._sessions[session.session_id]
    await eventually(lambda: _full(kept), timeout=30, what="the stdout buffer to fill")
    # Nothing reads: the reader stopped taking frames at the bound (at most one frame past it)
    # and the process is blocked on its pipe, not filling the host's memory.
    assert len(kept.stdout) < stdio.MAX_STDOUT_BUFFER + (1 << 20)
    out = await ws.read_stdio(session.session_id, max_bytes=1000, timeout=1)
    assert out.stdout.startswith(b"flood\n") and len(out.stdout) == 1000
    await ws.close_stdio(session.session_id)
    assert await eventually(lambda: _no_yes(ws), timeout=30, what="the flooding process to end")


async def _full(session) -> bool:
    return not session.room.is_set()


async def _no_yes(ws) -> bool:
    return "yes flood" not in (await ws.exec("ps -eo args")).stdout


async def test_bad_requests_are_refused_and_sessions_are_bounded(ws) -> None:
    with pytest.raises(WorkspaceInvalidRequest):
        await ws.open_stdio("cat\x00evil")
    with pytest.raises(PathEscapeError):
        await ws.open_stdio("cat", cwd="../outside")
    with pytest.raises(WorkspacePathNotFound):
        await ws.open_stdio("cat", cwd="no-such-folder")
    with pytest.raises(WorkspaceNotFound):
        await ws.write_stdio("no-such-session", b"x")
    sessions = [await ws.open_stdio("cat") for _ in range(stdio.MAX_SESSIONS)]
    with pytest.raises(WorkspaceInvalidRequest, match="stdio sessions open"):
        await ws.open_stdio("cat")
    session = sessions[0]
    with pytest.raises(WorkspaceInvalidRequest):
        await ws.read_stdio(session.session_id, max_bytes=0)
    for each in sessions:
        await ws.close_stdio(each.session_id)
    assert not ws.stdio._sessions
