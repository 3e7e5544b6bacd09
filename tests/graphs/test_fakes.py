"""The shipped test doubles honour the interfaces' contracts (escapes, caps, hotpath, status)."""

from __future__ import annotations

import pytest

from quadracode_ray.interfaces import (
    AgentInfo,
    DelegationClient,
    FleetClient,
    FleetError,
    PathEscapeError,
    WorkspaceClient,
    WorkspaceError,
)
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace


def test_the_fakes_implement_the_protocols():
    fleet = FakeFleet()
    assert isinstance(FakeWorkspace(), WorkspaceClient)
    assert isinstance(fleet, FleetClient) and isinstance(FakeDelegation(fleet), DelegationClient)


async def test_workspace_files_and_escapes():
    ws = FakeWorkspace(files={"src/a.py": "print('a')\n"})
    await ws.write_file("/workspace/b.txt", b"\x00\x01")
    assert await ws.read_file("b.txt") == b"\x00\x01"
    assert [f.path for f in await ws.list_files()] == ["b.txt", "src"]
    assert [f.path for f in await ws.list_files(recursive=True)] == ["b.txt", "src/a.py"]
    for bad in ("../x", "/etc/passwd", "src/../../x"):
        with pytest.raises(PathEscapeError):
            await ws.read_file(bad)
    with pytest.raises(WorkspaceError):
        await ws.delete("src")
    await ws.delete("src", recursive=True)
    assert "src/a.py" not in ws.files
    snap = await ws.snapshot("s")
    assert snap.label == "s" and len(snap.sha256) == 64


async def test_workspace_commands_and_timeouts():
    ws = FakeWorkspace(files={"a.py": "print('hi')\nprint(3)\n", "b.py": "import os\n"})
    assert (await ws.exec("python3 a.py")).stdout == "hi\n3\n"
    assert (await ws.exec("python3 b.py")).exit_code == 1
    assert (await ws.exec("nope")).exit_code == 127
    slow = await ws.exec("sleep 5", timeout=0.05)
    assert slow.timed_out and slow.exit_code is None


async def test_fleet_cap_and_hotpath():
    fleet = FakeFleet(max_agents=1, agents=[AgentInfo(agent_id="hot", kind="coder", hotpath=True)])
    with pytest.raises(FleetError, match="cap"):
        await fleet.spawn_agent()
    with pytest.raises(FleetError, match="hotpath"):
        await fleet.kill_agent("hot")
    await fleet.kill_agent("hot", force=True)
    assert fleet.killed == ["hot"] and (await fleet.spawn_agent(kind="tester")).agent_id == "tester-1"


async def test_delegation_lifecycle():
    fleet = FakeFleet()
    agent = await fleet.spawn_agent()
    delegation = FakeDelegation(fleet)
    task = await delegation.delegate("do it", parent_thread_id="p", agent_id=agent.agent_id)
    assert task.status == "pending"
    with pytest.raises(FleetError):
        await delegation.delegate("do it", parent_thread_id="p", agent_id="ghost")
    result = delegation.complete(task.task_id, "done")
    assert result.status == "succeeded" and (await delegation.task_status(task.task_id)).status == "succeeded"
    assert (await delegation.cancel_task(task.task_id)).status == "succeeded"  # finished tasks stay finished
