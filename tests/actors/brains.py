"""A test brain for agents: deterministic, with hooks to hang or fail on demand."""

from __future__ import annotations

import asyncio

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


def build_test_brain(agent_id: str) -> TestBrain:
    return TestBrain(agent_id)
