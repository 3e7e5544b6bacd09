"""Run routing when the Serve app runs without the actor fabric (as these API tests deploy it):
the built-in assistants' runs fall back to the run-executor pool instead of waiting for an
orchestrator or agent actor that does not exist. With the fabric: tests/e2e/test_run_routing.py.
"""

from __future__ import annotations

import psycopg

from actors.run_executor import executor_names
from quadracode_ray.config import Settings


async def test_without_the_fabric_builtin_assistants_run_in_the_executor_pool(lg_client, api_database_url) -> None:
    pool = set(executor_names(Settings(_env_file=None), api_database_url))
    for assistant in ("orchestrator", "agent", "echo"):
        thread = await lg_client.threads.create()
        run = await lg_client.runs.create(thread["thread_id"], assistant, input={})
        await lg_client.runs.join(thread["thread_id"], run["run_id"])
        async with await psycopg.AsyncConnection.connect(api_database_url) as conn:
            cursor = await conn.execute("SELECT executor, status FROM qr_runs WHERE run_id = %s", (run["run_id"],))
            executor, status = await cursor.fetchone()
        assert executor in pool, (assistant, executor)
        assert status in ("success", "error"), (assistant, status)  # it ran (a built-in may lack a model key)
