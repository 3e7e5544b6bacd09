"""Creating a run of the ``agent`` assistant chooses its host (which may spawn an agent) only once
its thread takes the run: a missing thread or a busy one under ``reject`` spawns nothing.

Real Postgres and the real ``create_run``; the executor pool is a fake that records the choices.
"""

from __future__ import annotations

import uuid

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from serve_app.context import AppContext
from serve_app.errors import Conflict, NotFound
from serve_app.records.assistants import ensure_graph_assistants
from serve_app.runs import service
from serve_app.schemas import RunCreate


class _Executors:
    """Stands in for serve_app.executors.ExecutorPool: no actor, every choice recorded."""

    names = ["executor-0"]

    def __init__(self) -> None:
        self.chosen: list[dict] = []

    async def choose_host(self, run: dict) -> str:
        self.chosen.append(run)
        return "agent-host"  # what choose_agent_host answers once it found (or spawned) an agent


@pytest.fixture
async def context(database_url: str, tmp_path):
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path)
    context = AppContext(settings)
    pool = await open_async_pool(database_url, min_size=1, max_size=4, name="test-host-choice")
    await ensure_graph_assistants(pool, context.graphs.ids())
    context._pool, context.database_url, context._ready = pool, database_url, True
    context.executors = _Executors()
    yield context
    await pool.close()


async def _thread(context: AppContext) -> str:
    thread_id = str(uuid.uuid4())
    async with (await context.pool()).connection() as conn:
        await conn.execute("INSERT INTO qr_threads (thread_id, metadata) VALUES (%s, '{}')", (thread_id,))
    return thread_id


def _agent_run(**fields) -> RunCreate:
    return RunCreate(assistant_id="agent", input={"messages": []}, **fields)


async def test_an_agent_run_on_a_missing_thread_chooses_no_host(context: AppContext):
    with pytest.raises(NotFound):
        await service.create_run(context, _agent_run(), thread_id=str(uuid.uuid4()), push=False)
    assert context.executors.chosen == []


async def test_an_agent_run_refused_by_a_busy_thread_chooses_no_host(context: AppContext):
    thread_id = await _thread(context)
    first = await service.create_run(context, _agent_run(), thread_id=thread_id, push=False)
    assert first["executor"] == "agent-host" and len(context.executors.chosen) == 1
    with pytest.raises(Conflict):
        await service.create_run(context, _agent_run(multitask_strategy="reject"), thread_id=thread_id, push=False)
    assert len(context.executors.chosen) == 1  # the refused run chose (and spawned) nothing


async def test_an_agent_run_the_thread_takes_chooses_its_host(context: AppContext):
    created = await service.create_run(context, _agent_run(if_not_exists="create"), thread_id=str(uuid.uuid4()),
                                       push=False)
    queued_behind = await service.create_run(context, _agent_run(), thread_id=str(created["thread_id"]), push=False)
    assert [run["executor"] for run in (created, queued_behind)] == ["agent-host", "agent-host"]
    assert [c["thread_id"] for c in context.executors.chosen] == [str(created["thread_id"])] * 2
