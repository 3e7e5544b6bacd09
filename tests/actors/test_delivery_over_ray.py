"""The fabric's core delivery tests again, with the same-node sockets off: every envelope is a
Ray actor call, the path a sender on another node takes (and the fallback on this one)."""

from __future__ import annotations

from tests.actors import test_orchestrator
from tests.actors.test_orchestrator import (  # noqa: F401 - collected here, run on this module's fabric
    test_a_graph_failing_twice_on_a_result_reaches_it_once,
    test_round_trip_orchestrator_agent_orchestrator,
    test_sigkilled_agent_task_goes_to_a_new_agent,
)

FABRIC_SETTINGS = {**test_orchestrator.FABRIC_SETTINGS, "fabric_local_channel": False}


async def test_no_envelope_takes_a_socket(system):
    agent = await system.fleet.spawn.remote({"kind": "coder"})
    handle = await system.fleet.get_handle.remote(agent.agent_id)
    assert len(await system.orchestrator.probe.remote(agent.agent_id, 3)) == 3
    assert (await handle.status.remote())["channel"] == {"served": None, "sent": {"requests": 0, "unavailable": 0,
                                                                                   "clients": 0}}
    assert (await system.orchestrator.stats.remote())["channel"]["served"] is None
    await system.fleet.kill.remote(agent.agent_id)
