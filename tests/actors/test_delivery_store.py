"""The orchestrator's inbox store on real Postgres: group commit, de-duplication, order, retries."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from actors.delivery_postgres import PostgresInboxStore
from quadracode_ray.envelope import Envelope
from quadracode_ray.persistence import open_async_pool


@pytest.fixture
async def store(database_url: str):
    pool = await open_async_pool(database_url, min_size=1, max_size=2, name="test-deliveries")
    store = PostgresInboxStore(pool)
    yield store
    await store.close()
    await pool.close()


def envelopes(n: int, recipient: str) -> list[Envelope]:
    return [Envelope(sender="agent-1", recipient=recipient, kind="task_result", thread_id=f"t{i % 3}")
            for i in range(n)]


async def test_concurrent_acceptances_share_a_statement_and_duplicates_are_refused(store: PostgresInboxStore):
    batch = envelopes(50, "orch-a")
    statements_before = store.stats()["statements_total"]
    *fresh, again = await asyncio.gather(*(store.accept("orch-a", e) for e in batch), store.accept("orch-a", batch[0]))
    assert fresh == [True] * 50 and again is False  # the same id twice in one statement: only the first is new
    assert store.stats()["statements_total"] - statements_before < 50  # grouped, not one insert each
    assert await store.accept("orch-a", batch[1]) is False
    pending = await store.pending("orch-a")
    assert [e.id for e, _ in pending] == [e.id for e in batch]  # arrival order kept for recovery


async def test_status_updates_follow_their_rows(store: PostgresInboxStore):
    batch = envelopes(5, "orch-b")
    assert all(await asyncio.gather(*(store.accept("orch-b", e) for e in batch)))
    await asyncio.gather(store.finish("orch-b", batch[0].id, "done", 1, None),
                         store.finish("orch-b", batch[1].id, "dead", 3, "boom"),
                         store.record_attempt("orch-b", batch[2].id, 1, "flaky"))
    pending = await store.pending("orch-b")
    assert [(e.id, attempts) for e, attempts in pending] == [(batch[2].id, 1), (batch[3].id, 0), (batch[4].id, 0)]


async def test_a_lost_connection_is_retried_and_the_acceptance_still_returns(store: PostgresInboxStore,
                                                                             database_url: str):
    first, second = envelopes(2, "orch-c")
    assert await store.accept("orch-c", first) is True
    writer_pid = store._conn.info.backend_pid  # the writer's own connection (what a Postgres restart drops)
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (writer_pid,)).fetchone()[0]
    assert await asyncio.wait_for(store.accept("orch-c", second), 30) is True
    assert [e.id for e, _ in await store.pending("orch-c")] == [first.id, second.id]


async def test_a_row_a_predecessor_committed_after_recovery_is_handled_when_its_sender_retries(
        store: PostgresInboxStore):
    from actors.delivery import Inbox

    handled: list[str] = []

    async def handler(envelope: Envelope) -> None:
        handled.append(envelope.id)

    inbox = Inbox("orch-d", store, handler, lane_of=lambda e: e.thread_id or "", max_attempts=1, backoff_s=0,
                  publish=lambda e: None)
    assert await inbox.recover() == 0
    (late,) = envelopes(1, "orch-d")
    # The dead predecessor's insert commits now: after this inbox recovered, so nobody queued it.
    assert await store.accept("orch-d", late) is True
    receipt = await inbox.deliver(late)  # the sender never got its acknowledgement and retries
    assert receipt.status == "duplicate"
    await inbox.wait_idle()
    assert handled == [late.id]
    assert await store.pending("orch-d") == []
    assert (await inbox.deliver(late)).status == "duplicate"
    await inbox.wait_idle()
    assert handled == [late.id]  # once: a finished envelope is a plain duplicate
