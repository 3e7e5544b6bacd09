"""The event bus on real Ray and Postgres: logged once, watched live, queried, bounded, repaired."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
import pytest
import ray

from actors.client import FabricClient
from quadracode_ray.envelope import Envelope, EnvelopeFilter
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {"event_ring_size": 10, "event_ring_bytes": 64 << 10}


def env(i: int, **fields) -> Envelope:
    base = {"sender": "tester", "recipient": "someone", "kind": "note", "thread_id": "events-t1",
            "payload": {"n": i, "text": f"message number {i}"}}
    return Envelope(**{**base, **fields})


async def test_published_once_and_read_back_with_a_cursor(system):
    bus = system.events
    start = (await bus.stats.remote())["last_seq"]
    first = env(1)
    assert await bus.publish.remote(first) is True
    assert await bus.publish.remote(first) is False  # same id: logged once
    assert await bus.publish_many.remote([env(2), env(3), first]) == 2
    page = await bus.poll.remote(start, EnvelopeFilter(thread_id="events-t1"))
    assert [e.envelope.payload["n"] for e in page.events] == [1, 2, 3]
    assert (await bus.poll.remote(page.cursor, EnvelopeFilter(thread_id="events-t1"))).events == []
    assert await bus.count.remote(EnvelopeFilter(thread_id="events-t1")) == 3


async def test_poll_waits_for_the_next_envelope_pushed_not_polled(system):
    bus = system.events
    cursor = (await bus.stats.remote())["last_seq"]
    waiting = bus.poll.remote(cursor, EnvelopeFilter(kind="wake"), 10, 30.0)
    await bus.publish.remote(env(1, kind="other"))
    await bus.publish.remote(env(2, kind="wake"))
    page = await waiting
    assert [e.envelope.kind for e in page.events] == ["wake"]


async def test_watch_streams_matching_envelopes_in_order(system):
    client = FabricClient.from_handles(system)
    cursor = await client.cursor()
    received: list[int] = []

    async def consume():
        async for logged in client.watch(EnvelopeFilter(thread_id="watched"), cursor=cursor):
            received.append(logged.envelope.payload["n"])
            if len(received) == 5:
                return

    consumer = asyncio.ensure_future(consume())
    for i in range(5):
        await system.events.publish.remote(env(i, thread_id="watched"))
        await system.events.publish.remote(env(100 + i, thread_id="not-watched"))
    await asyncio.wait_for(consumer, 30)
    assert received == [0, 1, 2, 3, 4]
    # The consumer stopped: its generator on the bus is cancelled, not left running.
    await eventually(lambda: _no_watchers(system), timeout=20, what="the bus to drop the finished watcher")


async def _no_watchers(system) -> bool:
    return (await system.events.stats.remote())["watchers"] == 0


async def test_query_filters_and_regex_and_time_range(system):
    bus = system.events
    t0 = datetime.now(UTC) - timedelta(hours=2)
    await bus.publish_many.remote([
        env(1, sender="alpha", recipient="beta", kind="q-kind", thread_id="q", created_at=t0),
        env(2, sender="alpha", recipient="gamma", kind="q-kind", thread_id="q",
            payload={"text": "needle in a haystack"}),
        env(3, sender="delta", recipient="beta", kind="q-other", thread_id="q"),
    ])
    def ns(items):
        return sorted(e.envelope.sender + ">" + e.envelope.recipient for e in items)
    assert ns(await bus.query.remote(EnvelopeFilter(thread_id="q", sender="alpha"))) == ["alpha>beta", "alpha>gamma"]
    assert ns(await bus.query.remote(EnvelopeFilter(thread_id="q", recipient="beta"))) == ["alpha>beta", "delta>beta"]
    assert ns(await bus.query.remote(EnvelopeFilter(thread_id="q", kind="q-other"))) == ["delta>beta"]
    assert ns(await bus.query.remote(EnvelopeFilter(text_regex="need+le"))) == ["alpha>gamma"]
    recent = await bus.query.remote(EnvelopeFilter(thread_id="q", since=t0 + timedelta(hours=1)))
    assert len(recent) == 2
    old = await bus.query.remote(EnvelopeFilter(thread_id="q", until=t0 + timedelta(minutes=1)))
    assert [e.envelope.payload["n"] for e in old] == [1]
    with pytest.raises(ValueError, match="regular expression"):
        EnvelopeFilter(text_regex="(unclosed")


async def test_ring_is_bounded_and_old_cursors_read_history(system):
    bus = system.events
    cursor = (await bus.stats.remote())["last_seq"]
    await bus.publish_many.remote([env(i, thread_id="ring") for i in range(25)])
    stats = await bus.stats.remote()
    assert stats["ring"] == stats["ring_size"] == 10
    page = await bus.poll.remote(cursor, EnvelopeFilter(thread_id="ring"), 100)
    assert [e.envelope.payload["n"] for e in page.events] == list(range(25))
    # Behind the ring a regex is the same filter as live: RE2 over the compact JSON (Postgres's
    # text of a jsonb has '"n": 1', so a regex handed to SQL would find nothing here).
    page = await bus.poll.remote(cursor, EnvelopeFilter(thread_id="ring", text_regex=r'"n":1\d\b'), 100)
    assert [e.envelope.payload["n"] for e in page.events] == list(range(10, 20))


async def test_ring_is_bounded_in_bytes_whatever_the_envelopes_weigh(system):
    bus = system.events
    cursor = (await bus.stats.remote())["last_seq"]
    big = "x" * (16 << 10)  # four of these fill the 64 KiB ring: the count (10) is not what bounds it
    await bus.publish_many.remote([env(i, thread_id="heavy", payload={"n": i, "blob": big}) for i in range(12)])
    stats = await bus.stats.remote()
    assert stats["ring_bytes"] <= stats["ring_bytes_max"] == 64 << 10
    assert 1 <= stats["ring"] <= 4
    page = await bus.poll.remote(cursor, EnvelopeFilter(thread_id="heavy"), 100)  # behind the ring: Postgres
    assert [e.envelope.payload["n"] for e in page.events] == list(range(12))


async def test_the_bus_does_not_grow_with_events_and_watchers_once_its_ring_is_full(system):
    """What the soak saw grow (~0.15 MiB a minute) was the ring filling; past it nothing per event
    or per watcher stays: RSS after 3,000 more envelopes of ~3 KiB (9 MiB kept if each stayed)."""
    bus = system.events
    client = FabricClient.from_handles(system)
    pid = await bus.__ray_call__.remote(lambda self: os.getpid())
    blob = "y" * 3000

    async def traffic(start: int) -> None:
        for base in range(start, start + 1500, 100):
            await bus.publish_many.remote([env(i, thread_id="rss", payload={"n": i, "blob": blob})
                                           for i in range(base, base + 100)])
        recent = (await bus.stats.remote())["last_seq"] - 5  # in the ring: live watchers' path
        for _ in range(20):  # short-lived watchers, each cancelled after 5 (a client that went away)
            received = 0
            async for _logged in client.watch(EnvelopeFilter(thread_id="rss"), cursor=recent):
                received += 1
                if received == 5:
                    break

    await traffic(0)
    await traffic(1500)  # warm-up: allocator pools, pages of the pool's connections
    before = psutil.Process(pid).memory_info().rss
    await traffic(3000)
    await traffic(4500)
    await eventually(lambda: _no_watchers(system), timeout=20, what="the bus to drop its finished watchers")
    grown = psutil.Process(pid).memory_info().rss - before
    stats = await bus.stats.remote()
    assert stats["ring"] <= 10 and stats["ring_bytes"] <= 64 << 10
    assert grown < 3 << 20, f"the bus grew {grown / 2**20:.1f} MiB over 3,000 envelopes past its ring"


async def test_retention_prunes_old_history(system):
    bus = system.events
    old_time = datetime.now(UTC) - timedelta(days=400)
    await bus.publish.remote(env(1, thread_id="ancient", created_at=old_time))
    await bus.publish.remote(env(2, thread_id="ancient"))
    assert await bus.prune.remote() >= 1  # the default retention (30 days) removes the old one
    left = await bus.query.remote(EnvelopeFilter(thread_id="ancient"))
    assert [e.envelope.payload["n"] for e in left] == [2]


async def test_reconcile_logs_accepted_envelopes_the_bus_never_saw(system):
    lost = env(7, thread_id="repaired", recipient="orchestrator")
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO qr_deliveries (recipient, envelope_id, envelope, status) VALUES (%s, %s, %s, 'done')",
                     (lost.recipient, lost.id, json.dumps(json.loads(lost.model_dump_json()))))
    assert await system.events.count.remote(EnvelopeFilter(thread_id="repaired")) == 0
    assert await system.events.reconcile.remote() == 1
    (logged,) = await system.events.query.remote(EnvelopeFilter(thread_id="repaired"))
    assert logged.envelope.id == lost.id and logged.envelope.payload == lost.payload
    assert await system.events.reconcile.remote() == 0


async def test_a_live_watcher_gets_an_envelope_the_sweep_logged_before_its_publish_arrived(system):
    """The race of the 50-agent bench: the recipient recorded a delivery, the reconcile sweep logged
    it before the publish reached the bus; the live watcher must still get it, once."""
    client = FabricClient.from_handles(system)
    cursor = await client.cursor()
    received: list[str] = []

    async def consume():
        async for logged in client.watch(EnvelopeFilter(thread_id="swept"), cursor=cursor):
            received.append(logged.envelope.id)
            if logged.envelope.payload["n"] == 10:
                return

    consumer = asyncio.ensure_future(consume())
    swept = env(9, thread_id="swept", recipient="orchestrator")
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO qr_deliveries (recipient, envelope_id, envelope, status) VALUES (%s, %s, %s, 'done')",
                     (swept.recipient, swept.id, json.dumps(json.loads(swept.model_dump_json()))))
    assert await system.events.reconcile.remote() == 1
    assert await system.events.publish.remote(swept) is False  # the late publish: already logged
    await system.events.publish.remote(env(10, thread_id="swept"))
    await asyncio.wait_for(consumer, 30)
    assert received[0] == swept.id and received.count(swept.id) == 1 and len(received) == 2


async def test_sandbox_events_are_logged_through_emit(system):
    from sandbox.models import SandboxEvent

    event = SandboxEvent(workspace_id="ws1", operation="exec", duration_ms=3.5, outcome="ok", at=datetime.now(UTC))
    event_id = await system.events.emit.remote(event)
    (logged,) = await system.events.query.remote(EnvelopeFilter(kind="system_event", sender="workspace:ws1"))
    assert logged.envelope.id == event_id and logged.envelope.payload["operation"] == "exec"


async def test_nothing_is_lost_when_the_bus_dies_under_traffic(system):
    client = FabricClient.from_handles(system)
    thread = str(uuid.uuid4())
    submitted = []
    for i in range(30):
        receipt = await client.submit_user_message(thread, f"message {i}")
        submitted.append(receipt.envelope_id)
        if i == 10:
            ray.kill(system.events, no_restart=False)
    await system.orchestrator.wait_idle.remote()

    async def all_logged():
        try:
            found = await system.events.query.remote(EnvelopeFilter(thread_id=thread, kind="user_message"), limit=100)
        except ray.exceptions.RayActorError:
            return None
        return found if len(found) == len(submitted) else None

    found = await eventually(all_logged, timeout=90, what="every submitted envelope in the event log")
    assert sorted(logged.envelope.id for logged in found) == sorted(submitted)  # each once, none lost


async def test_reconcile_restores_a_dead_letter_the_bus_never_saw(system):
    lost = env(8, thread_id="dead-repaired", recipient="orchestrator")
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO qr_deliveries (recipient, envelope_id, envelope, status, attempts, last_error) "
                     "VALUES (%s, %s, %s, 'dead', 5, 'ValueError: broken')",
                     (lost.recipient, lost.id, json.dumps(json.loads(lost.model_dump_json()))))
    assert await system.events.reconcile.remote() == 2  # the envelope and its dead letter
    dead = [d for d in await system.events.dead_letters.remote(50) if (d["envelope"] or {}).get("id") == lost.id]
    assert len(dead) == 1 and dead[0]["attempts"] == 5 and dead[0]["error"] == "ValueError: broken"
