"""Delivery and envelope logic without Ray: de-duplication, lanes, retries, dead letters."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from actors.delivery import Inbox, MemoryInboxStore
from actors.registry import Registration, RegistryState
from quadracode_ray.envelope import DEAD_LETTER, Envelope, EnvelopeFilter


def make(kind: str = "note", thread: str | None = "t", **payload) -> Envelope:
    return Envelope(sender="a", recipient="me", kind=kind, thread_id=thread, payload=payload)


def inbox_with(handler, **options) -> tuple[Inbox, list[Envelope]]:
    published: list[Envelope] = []
    inbox = Inbox("me", MemoryInboxStore(), handler, lane_of=lambda e: e.thread_id or "_",
                  max_attempts=options.get("max_attempts", 3), backoff_s=0.0, publish=published.append)
    inbox.open()
    return inbox, published


async def test_duplicates_are_acknowledged_and_ignored():
    seen: list[str] = []

    async def handler(envelope):
        seen.append(envelope.id)

    inbox, published = inbox_with(handler)
    envelope = make()
    assert (await inbox.deliver(envelope)).status == "accepted"
    assert (await inbox.deliver(envelope)).status == "duplicate"
    await inbox.wait_idle()
    assert (await inbox.deliver(envelope)).status == "duplicate"
    await inbox.wait_idle()
    assert seen == [envelope.id]
    assert published == [envelope]  # published once, on first acceptance


async def test_a_lane_is_in_order_and_lanes_run_concurrently():
    order: list[int] = []
    gate = asyncio.Event()

    async def handler(envelope):
        if envelope.thread_id == "slow":
            await gate.wait()
        order.append(envelope.payload["n"])
        if envelope.thread_id == "fast" and envelope.payload["n"] == 12:
            gate.set()

    inbox, _ = inbox_with(handler)
    for n in range(3):
        await inbox.deliver(make(thread="slow", n=n))
    for n in range(10, 13):
        await inbox.deliver(make(thread="fast", n=n))
    await asyncio.wait_for(inbox.wait_idle(), 5)
    assert order == [10, 11, 12, 0, 1, 2]  # fast lane not blocked by slow; each lane in order


async def test_failing_handler_is_retried_then_succeeds_once():
    attempts: list[int] = []

    async def handler(envelope):
        attempts.append(envelope.attempt)
        if len(attempts) < 3:
            raise RuntimeError("transient")

    inbox, published = inbox_with(handler)
    await inbox.deliver(make())
    await asyncio.wait_for(inbox.wait_idle(), 5)
    assert attempts == [0, 1, 2]
    assert [e.kind for e in published] == ["note"]


async def test_exhausted_envelope_becomes_a_dead_letter_never_dropped():
    async def handler(envelope):
        raise ValueError("always")

    inbox, published = inbox_with(handler, max_attempts=2)
    envelope = make()
    await inbox.deliver(envelope)
    await asyncio.wait_for(inbox.wait_idle(), 5)
    dead = [e for e in published if e.kind == DEAD_LETTER]
    assert len(dead) == 1
    assert dead[0].payload["envelope"]["id"] == envelope.id
    assert dead[0].payload["attempts"] == 2 and "always" in dead[0].payload["error"]
    assert inbox.store.dead[0][0] == envelope


async def test_misaddressed_envelope_is_refused():
    inbox, _ = inbox_with(lambda e: asyncio.sleep(0))
    with pytest.raises(ValueError, match="addressed"):
        await inbox.deliver(Envelope(sender="a", recipient="someone-else", kind="note"))


def test_envelope_validation_and_filter():
    with pytest.raises(ValidationError):
        Envelope(sender="a", recipient="b", kind="Bad Kind")
    with pytest.raises(ValidationError):
        Envelope(sender="a", recipient="b", kind="k", unexpected=1)
    envelope = Envelope(sender="a", recipient="b", kind="k", thread_id="t", payload={"text": "hello world"})
    assert EnvelopeFilter(sender="a", kind="k", text_regex="wor+ld").matches(envelope)
    assert not EnvelopeFilter(recipient="c").matches(envelope)
    reply = envelope.reply("r", {"ok": True})
    assert (reply.sender, reply.recipient, reply.thread_id) == ("b", "a", "t")
    assert Envelope.model_validate_json(envelope.model_dump_json()) == envelope


def test_registry_state_reaps_only_silent_agents():
    now = [100.0]
    state = RegistryState(ttl_s=5, clock=lambda: now[0])
    state.register(Registration(agent_id="a", kind="coder", capabilities=["py"]))
    state.register(Registration(agent_id="b", kind="tester"))
    now[0] += 4
    assert state.heartbeat("a") and not state.heartbeat("zzz")
    now[0] += 2  # b silent for 6 s, a for 2 s
    assert [a.agent_id for a in state.select()] == ["a"]  # unhealthy b is hidden
    assert [a.agent_id for a in state.select(capability="py")] == ["a"]
    assert [a.agent_id for a in state.select(kind="tester", include_unhealthy=True)] == ["b"]
    assert [e.registration.agent_id for e in state.reap()] == ["b"]
    assert list(state.entries) == ["a"] and state.reaped_total == 1


def test_a_text_regex_is_linear_time_re2():
    """A backtracking pattern costs RE2 nothing (Python's re takes minutes on this text), and what
    RE2 cannot run is refused with the reason, before it reaches the bus."""
    import time

    envelope = Envelope(sender="a", recipient="b", kind="k", payload={"text": "a" * 50_000 + "!"})
    started = time.monotonic()
    assert not EnvelopeFilter(text_regex="(a+)+$").matches(envelope)
    assert time.monotonic() - started < 5.0
    with pytest.raises(ValueError, match="no backreferences"):
        EnvelopeFilter(text_regex=r"(a)\1")
