"""Fleet manager and registry on real Ray and Postgres: spawn, kill, cap, hotpath, TTL, restarts."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import ray

from actors.fleet import AgentStartFailed, FleetCapacityError, HotpathAgentError, UnknownAgentError
from actors.fleet_client import FleetActorClient
from actors.registry import Registration
from quadracode_ray.envelope import AGENT_LOST, EnvelopeFilter
from quadracode_ray.interfaces.fleet import FleetClient, FleetError
from tests.actors.brains import CRASH_AT_START, starts_so_far
from tests.actors.conftest import eventually

FABRIC_SETTINGS = {"fleet_max_agents": 4, "fleet_start_concurrency": 1}


async def registered_ids(system) -> set[str]:
    return {a.agent_id for a in await system.registry.list.remote()}


async def test_spawn_kill_cap_and_hotpath(system):
    fleet = FleetActorClient(system.settings, system.fleet)
    assert isinstance(fleet, FleetClient)
    spawned = [await fleet.spawn_agent(kind="coder", capabilities=["python"]) for _ in range(3)]
    ids = {a.agent_id for a in spawned}
    assert len(ids) == 3
    assert ids <= await registered_ids(system)
    assert {a.agent_id for a in await fleet.list_agents(capability="python")} == ids
    assert await fleet.list_agents(capability="rust") == []

    # One slot left: of three concurrent spawns exactly one gets it, the others get the typed error.
    outcomes = await asyncio.gather(*(fleet.spawn_agent(kind="tester") for _ in range(3)), return_exceptions=True)
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1 and len(refused) == 2
    assert all(isinstance(e, FleetCapacityError) and "agent cap reached" in str(e) for e in refused)
    assert (await system.fleet.stats.remote())["live"] == 4

    # Kill K=2 and the slots come back; the registry forgets them.
    for agent in spawned[:2]:
        await fleet.kill_agent(agent.agent_id)
    assert (await system.fleet.stats.remote())["live"] == 2
    assert not {a.agent_id for a in spawned[:2]} & await registered_ids(system)
    with pytest.raises(UnknownAgentError):
        await fleet.kill_agent(spawned[0].agent_id)

    # Hotpath: refused without force, allowed with it.
    hot = spawned[2]
    assert (await fleet.mark_hotpath(hot.agent_id)).hotpath
    with pytest.raises(HotpathAgentError, match="hotpath"):
        await fleet.kill_agent(hot.agent_id)
    assert hot.agent_id in await registered_ids(system)
    await fleet.kill_agent(hot.agent_id, force=True)
    assert hot.agent_id not in await registered_ids(system)
    await fleet.kill_agent(winners[0].agent_id)
    assert (await system.fleet.stats.remote())["live"] == 0


async def test_concurrent_spawns_start_one_at_a_time_and_all_succeed(system):
    """fleet_start_concurrency=1: three spawns at once all succeed, their starts one after another
    (50 at once on 2 cores all missed the start timeout together)."""
    fleet = FleetActorClient(system.settings, system.fleet)
    spawned = await asyncio.gather(*(fleet.spawn_agent(kind="burst") for _ in range(3)))
    assert len({a.agent_id for a in spawned}) == 3
    stats = await system.fleet.stats.remote()
    assert stats["live"] == 3 and stats["most_starting_at_once"] == 1
    for agent in spawned:
        await fleet.kill_agent(agent.agent_id)


async def test_an_agent_whose_process_dies_while_starting_is_started_once_more(system):
    """A worker segfaulting before start answers (seen once in CI: Ray's own metrics thread) costs
    one more start, not the spawn; dying twice is a typed error and frees the slot."""
    once, always = (f"{CRASH_AT_START}{n}-{uuid.uuid4().hex[:8]}" for n in (1, 9))
    try:
        before = await system.fleet.stats.remote()
        info = await system.fleet.spawn.remote({"kind": "coder", "agent_id": once})
        assert info.agent_id == once and starts_so_far(once).read_text() == "2"
        assert once in await registered_ids(system)
        stats = await system.fleet.stats.remote()
        assert stats["start_retries"] == before["start_retries"] + 1 and stats["live"] == before["live"] + 1

        with pytest.raises(AgentStartFailed, match="its process died at each of 2 starts"):
            await system.fleet.spawn.remote({"kind": "coder", "agent_id": always})
        assert starts_so_far(always).read_text() == "2"
        stats = await system.fleet.stats.remote()
        assert stats["live"] == before["live"] + 1 and stats["starting"] == 0
        assert always not in {a.agent_id for a in await FleetActorClient(system.settings, system.fleet).list_agents()}
        await system.fleet.kill.remote(once)
    finally:
        for agent_id in (once, always):
            starts_so_far(agent_id).unlink(missing_ok=True)


async def test_bad_spawn_request_changes_nothing(system):
    before = await system.fleet.stats.remote()
    with pytest.raises(Exception, match="kind"):
        await system.fleet.spawn.remote({"kind": "Not A Kind!"})
    with pytest.raises(Exception, match="extra"):
        await system.fleet.spawn.remote({"kind": "coder", "bogus": 1})
    assert await system.fleet.stats.remote() == before
    assert issubclass(FleetCapacityError, FleetError)


async def test_registry_reaps_silent_agents_and_tells_the_orchestrator(system):
    # An agent that registers and never heartbeats (as if its process froze).
    await system.registry.register.remote(Registration(agent_id="silent-1", kind="coder", capabilities=["x"]))
    assert "silent-1" in await registered_ids(system)
    await eventually(lambda: _not_registered(system, "silent-1"), timeout=30, what="silent agent reaped")
    notified = await eventually(lambda: system.events.query.remote(
        EnvelopeFilter(kind=AGENT_LOST, recipient="orchestrator", text_regex="silent-1")),
        timeout=30, what="agent_lost envelope in the event log")
    assert len(notified) == 1
    assert notified[0].envelope.payload["agent_id"] == "silent-1"
    assert (await system.registry.stats.remote())["reaped_total"] >= 1


async def _not_registered(system, agent_id: str) -> bool:
    return agent_id not in {a.agent_id for a in await system.registry.list.remote(include_unhealthy=True)}


async def test_agents_register_again_after_the_registry_restarts(system):
    fleet = FleetActorClient(system.settings, system.fleet)
    agents = [await fleet.spawn_agent(kind="coder") for _ in range(2)]
    ids = {a.agent_id for a in agents}
    before = await system.registry.stats.remote()
    ray.kill(system.registry, no_restart=False)
    await eventually(lambda: _restarted(system, before["started_at"]), timeout=30, what="registry restart")
    # Converges within about one heartbeat interval (0.25 s); allow scheduling slack on a busy machine.
    await eventually(lambda: _all_registered(system, ids), timeout=30, what="agents registered again")
    infos = {a.agent_id: a for a in await system.registry.list.remote()}
    assert all(infos[i].healthy for i in ids)
    for agent in agents:
        await fleet.kill_agent(agent.agent_id)


async def _restarted(system, started_at: str) -> bool:
    try:
        return (await system.registry.stats.remote())["started_at"] != started_at
    except ray.exceptions.RayActorError:
        return False


async def _all_registered(system, ids: set[str]) -> bool:
    return ids <= await registered_ids(system)


@pytest.mark.slow
async def test_fleet_restart_keeps_the_cap_and_hotpath_marks(system):
    fleet = FleetActorClient(system.settings, system.fleet)
    agents = [await fleet.spawn_agent(kind="coder") for _ in range(4)]
    await fleet.mark_hotpath(agents[0].agent_id)
    ray.kill(system.fleet, no_restart=False)
    stats = await eventually(lambda: _fleet_stats(system), timeout=60, what="fleet manager back")
    assert stats["live"] == 4 and stats["hotpath"] == [agents[0].agent_id]
    with pytest.raises(FleetCapacityError):
        await fleet.spawn_agent(kind="coder")
    with pytest.raises(HotpathAgentError):
        await fleet.kill_agent(agents[0].agent_id)
    for agent in agents:
        await fleet.kill_agent(agent.agent_id, force=True)
    assert (await system.fleet.stats.remote())["live"] == 0


async def _fleet_stats(system):
    try:
        return await system.fleet.stats.remote()
    except ray.exceptions.RayActorError:
        return None


@ray.remote(num_cpus=0)
def _ensure_from_another_process(settings) -> dict[str, str]:
    from actors.bootstrap import ensure_system

    handles = ensure_system(settings)
    return {name: getattr(handles, name)._actor_id.hex() for name in ("events", "registry", "fleet", "orchestrator")}


@pytest.mark.slow
async def test_ensure_system_from_many_processes_at_once_gives_one_set_of_singletons(system):
    from actors.bootstrap import shutdown_system, system_actor_names

    settings = system.settings.model_copy(update={"actor_name_prefix": system.settings.actor_name_prefix + "many-"})
    try:
        answers = await asyncio.gather(*(_ensure_from_another_process.remote(settings) for _ in range(4)))
        assert all(answer == answers[0] for answer in answers)
        assert sorted(system_actor_names(settings)) == sorted(
            settings.actor_name_prefix + n for n in ("events", "registry", "fleet", "orchestrator"))
    finally:
        shutdown_system(settings)
