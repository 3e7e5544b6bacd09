"""Round-trip probes orchestrator -> agent -> orchestrator, with the time of each segment.

The orchestrator sends a ``ping`` envelope to an agent (stamped ``sent_ns``); the agent's
handler answers with a ``pong`` carrying when its handler started and when it sent the pong;
the orchestrator notes when the pong reached its ``deliver`` and when its handler ran (after
the durable acceptance). The stamps are ``time.perf_counter_ns()``, CLOCK_MONOTONIC on Linux:
comparable between processes of one machine only, so the segments mean something only when
the agent runs on the orchestrator's node (the bench's case); the total is always right.
"""

from __future__ import annotations

import asyncio
import time

from quadracode_ray.envelope import PING, PONG, Envelope

SEGMENTS = ("ping_ms", "agent_ms", "pong_ms", "accept_ms")
"""ping_ms: orchestrator send -> agent handler (one message, a socket frame on one node or a Ray
call, the agent's acceptance and lane hand-off); agent_ms: the agent's handler until it sends the
pong; pong_ms: agent send -> orchestrator ``deliver`` (one message); accept_ms: ``deliver`` -> orchestrator handler (the
durable insert in ``qr_deliveries`` and the lane hand-off)."""


def ping(sender: str, agent_id: str) -> Envelope:
    return Envelope(sender=sender, recipient=agent_id, kind=PING, payload={"sent_ns": time.perf_counter_ns()})


def pong_for(ping_envelope: Envelope, handler_ns: int) -> Envelope:
    """The agent's answer to ``ping_envelope`` (its handler started at ``handler_ns``)."""
    return ping_envelope.reply(PONG, {"ping_id": ping_envelope.id, "handler_ns": handler_ns,
                                      "sent_ns": time.perf_counter_ns()}, id=f"{ping_envelope.id}:pong")


class Probes:
    """The orchestrator's side: outstanding pings and when their pongs arrived (bounded by them)."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[Envelope, asyncio.Future]] = {}
        self._arrived: dict[str, int] = {}

    def expect(self, ping_envelope: Envelope) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting[ping_envelope.id] = (ping_envelope, future)
        return future

    def forget(self, ping_envelope: Envelope) -> None:
        self._waiting.pop(ping_envelope.id, None)
        self._arrived.pop(ping_envelope.id, None)

    def arrived(self, pong: Envelope) -> None:
        """At the orchestrator's ``deliver``, before the acceptance."""
        ping_id = str(pong.payload.get("ping_id"))
        if ping_id in self._waiting:
            self._arrived.setdefault(ping_id, time.perf_counter_ns())

    def answered(self, pong: Envelope) -> None:
        """In the orchestrator's handler: resolves the waiting probe with its segments (ms)."""
        handled = time.perf_counter_ns()
        ping_id = str(pong.payload.get("ping_id"))
        waiting = self._waiting.pop(ping_id, None)
        arrived = self._arrived.pop(ping_id, handled)
        if waiting is None or waiting[1].done():
            return
        ping_envelope, future = waiting
        sent = int(ping_envelope.payload["sent_ns"])  # type: ignore[arg-type]
        agent_start = int(pong.payload.get("handler_ns") or sent)  # type: ignore[arg-type]
        agent_sent = int(pong.payload.get("sent_ns") or agent_start)  # type: ignore[arg-type]
        future.set_result({"total_ms": (handled - sent) / 1e6, "ping_ms": (agent_start - sent) / 1e6,
                           "agent_ms": (agent_sent - agent_start) / 1e6, "pong_ms": (arrived - agent_sent) / 1e6,
                           "accept_ms": (handled - arrived) / 1e6})

