"""The orchestrator actor: hosts the runs of the orchestrator graph, never blocking on an agent.

Every input for a thread becomes a run in the durable queue ``qr_runs``, hosted by this actor's
run host (``runs/``): a user message or graph input given to ``submit``, a run of assistant
``orchestrator`` created through the API, and an agent's result (a ``task_result`` envelope),
which resumes the thread that delegated the task as a run of its own. One checkpointer (the run
host's), one stream per run (what the API's joins and thread streams follow). The inbox
(``qr_deliveries``) takes what is not a run: agents' results before they are queued as runs,
``agent_lost`` from the registry, pongs. Delegation returns at once with a task id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict

from actors import fabric_metrics
from actors.agent_run_hosts import adopt_runs_of_dead_agents
from actors.common import (
    FLEET,
    ORCHESTRATOR,
    HandleCache,
    actor_name,
    open_fabric_pool,
    spawn_background,
    start_with_retries,
    to_jsonable,
)
from actors.delivery import (
    DeliveryReceipt,
    Inbox,
    PostgresInboxStore,
    send,
    serve_deliveries,
    sweep_channel_sockets,
)
from actors.dispatch import Dispatcher
from actors.fabric_clients import fabric_configurable
from actors.fleet_client import FleetActorClient
from actors.probes import Probes, ping
from actors.publisher import EventPublisher
from actors.run_hosting import RayForward, RunHostCalls
from actors.tasks import FabricDelegation, TaskStore
from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.envelope import (
    AGENT_LOST,
    GRAPH_INPUT,
    PONG,
    TASK_RESULT,
    USER_MESSAGE,
    Envelope,
)
from quadracode_ray.graphs.control import StopRegistry
from quadracode_ray.interfaces.fleet import TaskInfo, TaskResult
from quadracode_ray.ray_metrics import install_ray_metrics
from runs.enqueue import enqueue_run, run_id_for
from runs.execution import TRACE_METADATA_KEY
from runs.host import RunHost
from runs.settings import RunSettings
from runs.threads import thread_id_of

log = logging.getLogger(__name__)
SYSTEM_LANE = "_system"
GRAPH = "orchestrator"
SOURCES = {USER_MESSAGE: "user_message", GRAPH_INPUT: "graph_input", TASK_RESULT: "agent_result"}
"""The ``source`` in the metadata of the runs this actor queues, by the envelope that caused them."""


class SubmitReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envelope_id: str
    thread_id: str
    run_id: str
    """The run in ``qr_runs`` that the input became (the same for the same envelope id)."""
    status: str
    """``accepted``, or ``duplicate`` when that envelope id was submitted before."""


@ray.remote(num_cpus=0)
class Orchestrator(RunHostCalls):
    def __init__(self, settings: Settings):
        install_ray_metrics(settings.actor_name_prefix)
        tracing.configure_tracing(settings, "orchestrator")
        self.settings = settings
        self.handles = HandleCache(settings)
        self.publisher = EventPublisher(self.handles, owner=ORCHESTRATOR)
        self.probes = Probes()
        self._background: set[asyncio.Task] = set()
        self._started = asyncio.get_running_loop().create_task(start_with_retries(self._start, "orchestrator"))

    async def _start(self) -> None:
        settings = self.settings
        if getattr(self, "fabric_pool", None) is None:  # kept across start retries
            self.fabric_pool = await open_fabric_pool(settings, name="orchestrator-fabric")
        self.store = TaskStore(self.fabric_pool)
        self.inbox = Inbox(ORCHESTRATOR, PostgresInboxStore(self.fabric_pool), self._handle,
                           lane_of=lambda env: env.thread_id or f"{SYSTEM_LANE}:{env.sender}",
                           max_attempts=settings.delivery_max_attempts, backoff_s=settings.delivery_backoff_s,
                           publish=self._publish, backlogged=lambda: self.publisher.full)
        self.dispatcher = Dispatcher(settings, self.store, self.handles, fail_task=self.inbox.deliver)
        self.delegation = FabricDelegation(self.store, self.dispatcher.schedule, self.dispatcher.cancel_on_agent)
        self.fleet = FleetActorClient(settings)
        self.stops = StopRegistry()
        if getattr(self, "run_host", None) is None:
            # Every run of the orchestrator graph executes here (runs/host.py), with this actor's
            # own delegation, fleet and stop registry.
            self.run_host = RunHost(
                actor_name(settings, ORCHESTRATOR), settings, settings.database_url, forward=RayForward(),
                min_connections=2,
                clients=lambda graph_id: fabric_configurable(graph_id, settings, delegation=self.delegation,
                                                             fleet=self.fleet, stop=self.stops))
            self.run_host.start()
        recovered = await self.inbox.recover()
        if recovered:
            log.warning("orchestrator: resumed %d envelopes accepted before a restart", recovered)
        if getattr(self, "channel", None) is None:  # same-node deliveries (actors/local_channel.py)
            self.channel = await serve_deliveries(self.handles, ORCHESTRATOR, self.deliver)
            spawn_background(self._background, sweep_channel_sockets(settings), name="sweep-sockets")
        spawn_background(self._background, start_with_retries(self.dispatcher.resume, "orchestrator task resume"),
                         name="resume-tasks")
        spawn_background(self._background, self._watchdog(), name="task-watchdog")

    async def _watchdog(self) -> None:
        while True:
            # Periodic by nature: it looks for agents that vanished without being reaped.
            await asyncio.sleep(self.settings.registry_ttl_s)
            try:
                await self.dispatcher.check_orphans()
            except Exception as exc:  # noqa: BLE001 - the registry may be restarting; next round
                log.warning("orchestrator: task watchdog failed: %s", exc)
            try:  # API runs of agents that died (agents are never restarted) continue here
                await adopt_runs_of_dead_agents(self.run_host, self.settings)
            except Exception as exc:  # noqa: BLE001 - next round
                log.warning("orchestrator: adopting dead agents' runs failed: %s", exc)

    async def ready(self) -> bool:
        await self._started
        return True

    # --- input ---------------------------------------------------------------------------------
    async def deliver(self, envelope: Envelope) -> DeliveryReceipt:
        if envelope.kind == PONG:
            self.probes.arrived(envelope)
        await self._started
        return await self.inbox.deliver(envelope)

    async def submit(self, thread_id: str, input: dict[str, Any] | None = None, *, message: str | None = None,
                     resume: Any = None, envelope_id: str | None = None, sender: str = "user") -> SubmitReceipt:
        """Queue input for a thread as a run: ``message`` (a user message), a raw graph ``input``,
        or ``resume`` (the answer to an interrupt, run as ``Command(resume=...)``).

        Returns once the run is in the queue (``qr_runs``); it starts after the thread's earlier
        runs. Pass ``envelope_id`` to make a retried submit safe (it queues one run)."""
        await self._started
        if sum(x is not None for x in (input, message, resume)) != 1:
            raise ValueError("submit needs exactly one of message (text), input (a graph input dict) or resume")
        if not thread_id:
            raise ValueError("submit needs a thread_id")
        thread_id = thread_id_of(thread_id)
        if message is not None:
            if not isinstance(message, str):
                raise ValueError("a user message is a text string")
            kind, payload = USER_MESSAGE, {"text": message}
        elif resume is not None:
            kind, payload = GRAPH_INPUT, {"command": {"resume": to_jsonable(resume)}}
        else:
            if not isinstance(input, dict):
                raise ValueError("a graph input is a dict")
            kind, payload = GRAPH_INPUT, {"input": to_jsonable(input)}
        fields: dict[str, Any] = {"sender": sender, "recipient": ORCHESTRATOR, "thread_id": thread_id,
                                  "kind": kind, "payload": payload}
        if envelope_id:
            fields["id"] = envelope_id
        envelope = Envelope(**fields)
        run_id, queued = await self._queue_run(envelope, thread_id, {})
        return SubmitReceipt(envelope_id=envelope.id, thread_id=thread_id, run_id=run_id,
                             status="accepted" if queued else "duplicate")

    def _publish(self, envelope: Envelope) -> None:
        """To the event bus, batched and off this actor's path (actors/publisher.py)."""
        self.publisher.put(envelope)

    async def _queue_run(self, envelope: Envelope, thread_id: str, metadata: dict[str, Any]) -> tuple[str, bool]:
        """The run ``envelope`` causes on ``thread_id``, queued once (its id derives from the
        envelope's) and started here; the envelope goes to the event log when it queued a run."""
        await self.run_host.ready()
        if envelope.kind == USER_MESSAGE:
            settings = {"input": {"messages": [{"role": "user", "content": envelope.payload["text"]}]}}
        elif envelope.kind == TASK_RESULT:
            settings = {"input": {"task_results": [envelope.payload]}}
        elif isinstance(envelope.payload.get("command"), dict):  # e.g. {"resume": "continue"} after an interrupt
            settings = {"command": {k: v for k, v in envelope.payload["command"].items()
                                    if k in ("resume", "update", "goto")}}
        else:
            settings = {"input": envelope.payload.get("input")}
        run_id = run_id_for(envelope.id)
        queued = await enqueue_run(
            self.run_host.pool, run_id=run_id, thread_id=thread_id, executor=self.run_host.name,
            create_thread=True,
            settings=RunSettings(graph_id=GRAPH, durability="sync", **settings,
                                 # a graph that raises is tried again, as the inbox retries a handler
                                 error_attempts=self.settings.delivery_max_attempts,
                                 error_backoff_s=self.settings.delivery_backoff_s),
            metadata={"source": SOURCES[envelope.kind], "envelope_id": envelope.id, "sender": envelope.sender,
                      **metadata})
        if queued and envelope.kind != TASK_RESULT:  # (the inbox logged the result when it accepted it)
            self._publish(envelope)
        await self.run_host.submit(run_id)  # also after a duplicate: the first may not have reached the host
        return run_id, bool(queued)

    # --- the inbox: what is not a run ---------------------------------------------------------------
    async def _handle(self, envelope: Envelope) -> None:
        if envelope.kind in (USER_MESSAGE, GRAPH_INPUT):  # delivered rather than submitted: a run all the same
            if envelope.kind == USER_MESSAGE and not isinstance(envelope.payload.get("text"), str):
                raise ValueError("a user_message payload needs a text string")
            await self._queue_run(envelope, thread_id_of(envelope.thread_id), {})
        elif envelope.kind == TASK_RESULT:
            await self._task_result(envelope)
        elif envelope.kind == PONG:
            self.probes.answered(envelope)
        elif envelope.kind == AGENT_LOST:
            agent_id = str(envelope.payload["agent_id"])
            moved = await self.dispatcher.agent_lost(agent_id)
            log.warning("orchestrator: agent %s lost; reassigning tasks %s", agent_id, moved)
            try:
                await self.handles.get(FLEET).forget.remote(agent_id, str(envelope.payload.get("reason", "lost")))
            except Exception as exc:  # noqa: BLE001 - the fleet finds dead agents at its cap anyway
                log.warning("orchestrator: fleet.forget(%s) failed: %s", agent_id, exc)
        else:
            raise ValueError(f"the orchestrator does not take {envelope.kind!r} envelopes")

    async def _task_result(self, envelope: Envelope) -> None:
        """An agent's result resumes the thread that delegated the task, as a run of its own."""
        payload = dict(envelope.payload)
        carried = payload.pop(TRACE_METADATA_KEY, None)  # the agent's task's trace, for the result's run
        result = TaskResult.model_validate(payload)
        if not envelope.thread_id:
            raise ValueError("a task_result envelope needs the parent thread_id")
        self.dispatcher.release(result.agent_id)
        if not await self.store.finish(result, envelope.id):
            log.info("orchestrator: ignoring %s for task %s (already closed)", envelope.id, result.task_id)
            return
        fabric_metrics.tasks().inc(tags={"outcome": result.status})
        # The task's row names its thread (a thread renamed by migration fabric/0002 included).
        thread_id = thread_id_of((await self.store.row(result.task_id))["parent_thread_id"])
        envelope = envelope.model_copy(update={"payload": result.model_dump(mode="json")})
        trace = {TRACE_METADATA_KEY: carried} if isinstance(carried, dict) else {}
        await self._queue_run(envelope, thread_id, {"task_id": result.task_id, "agent_id": result.agent_id, **trace})

    # --- queries and direct control ---------------------------------------------------------------
    async def get_state(self, thread_id: str) -> dict[str, Any]:
        await self._started
        host = await self._run_host_ready()
        await host.ready()  # its saver and graphs (a restarted actor's host may still be starting)
        config = {"configurable": {"thread_id": thread_id_of(thread_id),
                                   **fabric_configurable(GRAPH, self.settings, delegation=self.delegation,
                                                         fleet=self.fleet, stop=self.stops)}}
        graph = await host.registry.build(GRAPH, config, checkpointer=host.saver)
        state = await graph.aget_state({"configurable": {"thread_id": config["configurable"]["thread_id"]}})
        return {"values": to_jsonable(state.values), "next": list(state.next),
                "metadata": to_jsonable(state.metadata), "checkpoint_id":
                (state.config or {}).get("configurable", {}).get("checkpoint_id")}

    async def delegate(self, instruction: str, parent_thread_id: str, agent_id: str | None = None,
                       capability: str | None = None, config: dict[str, Any] | None = None,
                       trace: dict[str, str] | None = None) -> TaskInfo:
        """Delegate for a run hosted elsewhere: ``config`` is the assistant config the task's agent
        builds its graph with, ``trace`` the calling run's trace context (``tracing.carrier()``)."""
        await self._started
        with tracing.attached(trace):
            return await self.delegation.delegate(instruction, parent_thread_id=parent_thread_id, agent_id=agent_id,
                                                  capability=capability, config=config)

    async def task_status(self, task_id: str) -> TaskInfo:
        await self._started
        return await self.delegation.task_status(task_id)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        await self._started
        return await self.delegation.cancel_task(task_id)

    async def tasks(self, thread_id: str) -> list[TaskInfo]:
        await self._started
        return await self.store.of_thread(thread_id_of(thread_id))

    async def probe(self, agent_id: str, count: int = 1, timeout_s: float = 30.0) -> list[float]:
        """Round trips orchestrator -> agent -> orchestrator through the fabric, in ms: ``ping``
        delivered to the agent, ``pong`` delivered back (durably accepted) and handled here."""
        return [s["total_ms"] for s in await self.probe_segments(agent_id, count, timeout_s)]

    async def probe_segments(self, agent_id: str, count: int = 1, timeout_s: float = 30.0) -> list[dict[str, float]]:
        """Like ``probe``, each round trip with its segments (``actors.probes.SEGMENTS``)."""
        await self._started
        samples = []
        for _ in range(max(1, min(count, 10_000))):
            envelope = ping(ORCHESTRATOR, agent_id)
            answered = self.probes.expect(envelope)
            try:
                await send(self.handles, envelope, restartable=False, deadline_s=timeout_s)
                samples.append(await asyncio.wait_for(answered, timeout_s))
            finally:
                self.probes.forget(envelope)
        return samples

    async def probe_bare(self, agent_id: str, count: int = 1) -> list[float]:
        """The floor under ``probe``: plain Ray actor calls orchestrator -> agent, in ms."""
        await self._started
        handle = self.handles.get(agent_id)
        durations = []
        for _ in range(max(1, min(count, 10_000))):
            started = time.perf_counter()
            await handle.ping.remote()
            durations.append((time.perf_counter() - started) * 1000)
        return durations

    async def stop_thread(self, thread_id: str) -> None:
        """Emergency stop: the thread's current run halts at once (the graph asks the human)."""
        await self._started
        self.stops.stop(thread_id_of(thread_id))

    async def wait_idle(self) -> None:
        """Return when no envelope is queued or being handled and no run is running or due (tests
        and orderly shutdowns)."""
        await self._started
        await self.inbox.wait_idle()
        await self.run_host.wait_idle()
        await self.publisher.drain()

    async def stats(self) -> dict[str, Any]:
        await self._started
        return {"pid": os.getpid(), "inbox": self.inbox.stats(), "runs_started": self.run_host.runs_started,
                "publisher": self.publisher.stats(),
                "deliveries": self.inbox.store.stats(),
                "channel": {"served": self.channel.served if self.channel else None,
                            "sent": self.handles.channels.stats()},
                "dispatching": len(self.dispatcher._active), "agent_load": dict(self.dispatcher.load)}

    # --- API runs hosted here: the calls of RunHostCalls (runs/host.py) -------------------
    async def _run_host_ready(self) -> RunHost:
        await self._started
        return self.run_host
