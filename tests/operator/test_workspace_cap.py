"""The cap on workspaces the operator API keeps (settings.operator_max_workspaces), on real
Postgres: past it a create is refused with the cap in the error and changes nothing, a request
for an existing workspace is still answered, a delete frees a slot, and creates racing for the
last slots cannot pass the cap. No Docker here: the cap is decided before any container."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from serve_app.context import AppContext
from serve_app.operator.workspace_access import (
    WorkspaceCapReached,
    claim_workspace,
    forget_workspace,
    workspace_rows,
)

CAP = 3


@pytest.fixture
async def context(database_url: str, tmp_path):
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path, operator_max_workspaces=CAP)
    context = AppContext(settings)
    pool = await open_async_pool(database_url, min_size=1, max_size=12, name="test-workspace-cap")
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM qr_api_workspaces")
    context._pool, context.database_url = pool, database_url
    yield context
    await pool.close()


async def test_past_the_cap_a_create_is_refused_and_changes_nothing(context: AppContext):
    ids = [f"ws-cap-{n}" for n in range(CAP)]
    for workspace_id in ids:
        assert (await claim_workspace(context, workspace_id, "alice", {}))[1] is True
    with pytest.raises(WorkspaceCapReached) as refused:
        await claim_workspace(context, "ws-cap-one-more", "alice", {})
    assert refused.value.status_code == 409 and f"operator_max_workspaces = {CAP}" in str(refused.value)
    assert [row["workspace_id"] for row in await workspace_rows(context, None)] == ids
    # An existing workspace is still answered at the cap (the create is idempotent)...
    row, inserted = await claim_workspace(context, ids[0], "alice", {})
    assert row["workspace_id"] == ids[0] and inserted is False
    # ... and a delete frees a slot.
    await forget_workspace(context, ids[1])
    assert (await claim_workspace(context, "ws-cap-one-more", "alice", {}))[1] is True


async def test_creates_racing_for_the_last_slots_cannot_pass_the_cap(context: AppContext):
    await claim_workspace(context, "ws-race-first", None, {})
    attempts = [f"ws-race-{uuid.uuid4().hex[:6]}" for _ in range(10)]
    outcomes = await asyncio.gather(*(claim_workspace(context, workspace_id, None, {}) for workspace_id in attempts),
                                    return_exceptions=True)
    created = [attempts[n] for n, outcome in enumerate(outcomes) if isinstance(outcome, tuple) and outcome[1]]
    refused = [outcome for outcome in outcomes if isinstance(outcome, WorkspaceCapReached)]
    assert len(created) == CAP - 1 and len(refused) == len(attempts) - len(created), outcomes
    assert len(await workspace_rows(context, None)) == CAP
