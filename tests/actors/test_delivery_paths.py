"""Envelopes between actors of one node travel over the node's Unix sockets (actors/local_channel.py),
and a sender falls back to a Ray call when nobody answers there: real Ray, Postgres and actors."""

from __future__ import annotations

import os
import signal

import pytest
import ray

from actors.common import HandleCache
from actors.delivery import RecipientGone, send
from quadracode_ray.envelope import Envelope
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {"fleet_max_agents": 3}


async def test_round_trips_travel_over_the_sockets(system):
    agent = await system.fleet.spawn.remote({"kind": "coder"})
    handle = await system.fleet.get_handle.remote(agent.agent_id)
    before = (await system.orchestrator.stats.remote())["channel"]
    samples = await system.orchestrator.probe.remote(agent.agent_id, 5)
    assert len(samples) == 5 and all(ms > 0 for ms in samples)
    agent_side = (await handle.status.remote())["channel"]
    after = (await system.orchestrator.stats.remote())["channel"]
    assert agent_side["served"] == 5  # five pings, none through Ray
    assert agent_side["sent"]["requests"] == 5 and agent_side["sent"]["unavailable"] == 0  # five pongs
    assert after["served"] - before["served"] == 5
    assert after["sent"]["requests"] - before["sent"]["requests"] == 5
    assert after["sent"]["unavailable"] == before["sent"]["unavailable"]
    await system.fleet.kill.remote(agent.agent_id)


async def test_a_send_to_a_sigkilled_agent_finds_its_socket_dead_and_learns_it_is_gone(system):
    agent = await system.fleet.spawn.remote({"kind": "coder"})
    handle = await system.fleet.get_handle.remote(agent.agent_id)
    handles = HandleCache(system.settings)
    socket_file = handles.channel_path(agent.agent_id)
    assert socket_file is not None and socket_file.exists()
    os.kill(await handle.pid.remote(), signal.SIGKILL)
    assert socket_file.exists()  # left behind: nothing listens on it any more

    with pytest.raises(RecipientGone):
        await send(handles, Envelope(sender="test", recipient=agent.agent_id, kind="ping"),
                   restartable=False, deadline_s=30)
    assert handles.channels.stats()["unavailable"] == 1  # refused at the socket, then Ray said dead


async def test_a_restarted_orchestrator_listens_again_and_senders_reconnect(system):
    agent = await system.fleet.spawn.remote({"kind": "coder"})
    handle = await system.fleet.get_handle.remote(agent.agent_id)
    assert len(await system.orchestrator.probe.remote(agent.agent_id, 1)) == 1
    old_pid = (await system.orchestrator.stats.remote())["pid"]
    ray.kill(system.orchestrator, no_restart=False)

    async def served_over_the_new_socket():
        # ray.kill returns before the old process is gone: a first probe may still be its.
        try:
            await system.orchestrator.probe.remote(agent.agent_id, 1)
            stats = await system.orchestrator.stats.remote()
        except ray.exceptions.RayActorError:
            return None  # still restarting
        return stats if stats["pid"] != old_pid and stats["channel"]["served"] >= 1 else None
    await eventually(served_over_the_new_socket, timeout=60,
                     what="the restarted orchestrator taking a pong on its own socket")
    sent = (await handle.status.remote())["channel"]["sent"]
    assert sent["requests"] - sent["unavailable"] >= 2  # the old process's socket, then the new one's
