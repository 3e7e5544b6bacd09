"""Migration fabric/0002: threads the orchestrator actor ran by itself before the one run engine
(any name, checkpoints marked with qr_envelope_id) become threads of qr_threads and go on."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import START, StateGraph
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from quadracode_ray.persistence import open_async_pool
from quadracode_ray.persistence.checkpoints import ApiCheckpointSaver
from quadracode_ray.persistence.migrations import apply_migrations, discover
from runs.graph_registry import default_assistant_id
from runs.threads import InvalidThreadId, named_thread_id, thread_id_of


class State(TypedDict):
    messages: Annotated[list[str], operator.add]


def _graph(checkpointer):
    graph = StateGraph(State)
    graph.add_node("say", lambda state: {"messages": [f"seen {len(state['messages'])}"]})
    graph.add_edge(START, "say")
    return graph.compile(checkpointer=checkpointer)


@pytest.mark.parametrize("name", ["thread-1", "e2e-delegate-0a1b2c3d", "ünïcødé thread", "x" * 300])
def test_sql_names_a_thread_as_python_does(database_url: str, name: str) -> None:
    with psycopg.connect(database_url) as conn:
        (sql,) = conn.execute("SELECT qr_named_thread_id(%s)::text", (name,)).fetchone()
    assert sql == named_thread_id(name) and uuid.UUID(sql).version == 3


@pytest.mark.parametrize("form", [str.upper, lambda u: "{" + u + "}", lambda u: "urn:uuid:" + u,
                                  lambda u: u.replace("-", "")])
def test_a_thread_named_by_a_uuid_keeps_that_uuid(database_url: str, form) -> None:
    value = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        (sql,) = conn.execute("SELECT qr_named_thread_id(%s)::text", (form(value),)).fetchone()
    assert sql == thread_id_of(form(value)) == value


def test_a_thread_id_that_is_no_uuid_is_refused() -> None:
    with pytest.raises(InvalidThreadId, match="UUID"):
        thread_id_of("thread-1")
    with pytest.raises(InvalidThreadId, match="needed"):
        thread_id_of("")


async def test_fabric_threads_become_threads_of_the_run_engine(database_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    named, by_uuid, queued = f"old-thread-{tag}", str(uuid.uuid4()), f"queued-{tag}"
    pool = await open_async_pool(database_url, min_size=1, max_size=2, name="migration-test")
    try:
        old_graph = _graph(AsyncPostgresSaver(pool))  # as the orchestrator actor checkpointed its threads
        for thread, envelope in ((named, "env-1"), (by_uuid, "env-2")):
            await old_graph.ainvoke({"messages": ["hello"]},
                                    {"configurable": {"thread_id": thread}, "metadata": {"qr_envelope_id": envelope}})
        await old_graph.ainvoke({"messages": ["agent work"]}, {"configurable": {"thread_id": f"task:{tag}"}})
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            conn.execute("INSERT INTO qr_tasks (task_id, parent_thread_id, instruction, status) "
                         "VALUES (%s, %s, 'do it', 'running')", (f"t-{tag}", named))
            conn.execute("INSERT INTO qr_deliveries (recipient, envelope_id, envelope) VALUES ('orchestrator', %s, %s)",
                         (f"m-{tag}", Jsonb({"id": f"m-{tag}", "kind": "user_message", "thread_id": queued,
                                             "sender": "user", "recipient": "orchestrator",
                                             "payload": {"text": "later"}})))
            conn.execute("INSERT INTO qr_events (id, sender, recipient, kind, thread_id, payload, created_at) "
                         "VALUES (%s, 'user', 'orchestrator', 'user_message', %s, '{}', now())", (f"m0-{tag}", named))

            # Apply fabric/0002 again, as on a database that had the fabric's data before it.
            conn.execute("DELETE FROM qr_schema_migrations WHERE component = 'fabric' AND version = 2")
            conn.commit()
            with psycopg.connect(database_url) as plain:
                applied = apply_migrations(plain, discover())
            assert [(m.component, m.version) for m in applied] == [("fabric", 2)]

            new_named, new_queued = named_thread_id(named), named_thread_id(queued)
            threads = {str(r["thread_id"]): r["metadata"] for r in conn.execute(
                "SELECT thread_id, metadata FROM qr_threads WHERE thread_id = ANY(%s::uuid[])",
                ([new_named, by_uuid, new_queued],))}
            orchestrator = {"graph_id": "orchestrator", "assistant_id": default_assistant_id("orchestrator")}
            assert threads == {new_named: {**orchestrator, "fabric_thread_name": named}, by_uuid: orchestrator,
                               new_queued: {**orchestrator, "fabric_thread_name": queued}}
            count = "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s"
            assert conn.execute(count, (named,)).fetchone()["n"] == 0
            assert conn.execute(count, (new_named,)).fetchone()["n"] > 0
            assert conn.execute(count, (f"task:{tag}",)).fetchone()["n"] > 0  # an agent's thread is no thread
            assert conn.execute("SELECT count(*) AS n FROM qr_threads WHERE metadata->>'fabric_thread_name' = %s",
                                (f"task:{tag}",)).fetchone()["n"] == 0
            assert conn.execute("SELECT parent_thread_id FROM qr_tasks WHERE task_id = %s",
                                (f"t-{tag}",)).fetchone()["parent_thread_id"] == new_named
            assert conn.execute("SELECT envelope->>'thread_id' AS t FROM qr_deliveries WHERE envelope_id = %s",
                                (f"m-{tag}",)).fetchone()["t"] == new_queued
            assert conn.execute("SELECT thread_id FROM qr_events WHERE id = %s",
                                (f"m0-{tag}",)).fetchone()["thread_id"] == new_named

        # The thread goes on under its new id, with the run engine's checkpointer: one history.
        graph = _graph(ApiCheckpointSaver(pool))
        values = await graph.ainvoke({"messages": ["again"]}, {"configurable": {"thread_id": new_named}})
        assert values["messages"] == ["hello", "seen 1", "again", "seen 3"]
    finally:
        await pool.close()
