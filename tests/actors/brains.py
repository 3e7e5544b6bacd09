"""A test brain for agents: deterministic, with hooks to hang or fail on demand."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

from actors.brains import TaskRequest
from quadracode_ray.interfaces.fleet import TaskResult
from quadracode_ray.interfaces.workspace import WorkspaceClient


class TestBrain:
    """``hang-on:<agent id>`` hangs that agent forever (others finish); ``explode`` raises;
    anything else writes ``<task id>.txt`` in the workspace and answers ``done: <instruction>``."""

    __test__ = False

    def __init__(self, agent_id: str):
        self.agent_id = agent_id

    async def run(self, task: TaskRequest, workspace: WorkspaceClient) -> TaskResult:
        if f"hang-on:{self.agent_id}" in task.instruction:
            await asyncio.Event().wait()
        if "explode" in task.instruction:
            raise RuntimeError("the brain exploded on purpose")
        await workspace.write_file(f"{task.task_id}.txt", task.instruction)
        return TaskResult(task_id=task.task_id, agent_id=task.agent_id, status="succeeded",
                          output=f"done: {task.instruction}", artifacts=[f"{task.task_id}.txt"])


CRASH_AT_START = "crash-at-start-"
"""An agent id ``crash-at-start-<n>-<rest>`` segfaults its process while being constructed, the
first ``n`` times an agent of that id starts on this machine (counted in a file by its id)."""


def starts_so_far(agent_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"qr-test-starts-{agent_id}"


def build_test_brain(agent_id: str) -> TestBrain:
    if agent_id.startswith(CRASH_AT_START):
        crashes = int(agent_id.removeprefix(CRASH_AT_START).split("-", 1)[0])
        counter = starts_so_far(agent_id)
        started = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(started + 1))
        if started < crashes:  # what a native library's segfault does: no exception, the process is gone
            os.kill(os.getpid(), signal.SIGSEGV)
    return TestBrain(agent_id)
