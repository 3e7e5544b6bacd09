"""The orchestrator actor: runs the orchestrator graph per thread, never blocking on an agent.

Input arrives as envelopes (``user_message``, ``graph_input``, ``task_result`` from agents,
``agent_lost`` from the registry) through ``deliver``/``submit``. Each is recorded in
``qr_deliveries`` before it is acknowledged, then handled in its thread's lane: one envelope at
a time per thread, in order; threads run concurrently. The graph is checkpointed in Postgres
(AsyncPostgresSaver), and each checkpoint carries the id of the envelope whose run wrote it
(metadata ``qr_envelope_id``), which makes handling exactly-once towards the graph: a retry
after a failure, or the reload after a restart, resumes from the last checkpoint with no
input instead of applying the input again. Graph updates and run outcomes are published on
the event bus (kinds ``thread_update`` and ``thread_run``), which is how callers watch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict

from actors import fabric_metrics
from actors.agent_run_hosts import adopt_runs_of_dead_agents
from actors.common import (
    FLEET,
    ORCHESTRATOR,
    HandleCache,
    actor_name,
    call_with_supported,
    load_object,
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
from actors.workspaces import LazyWorkspace
from quadracode_ray.config import Settings
from quadracode_ray.envelope import (
    AGENT_LOST,
    GRAPH_INPUT,
    PONG,
    TASK_RESULT,
    THREAD_RUN,
    THREAD_UPDATE,
    USER_MESSAGE,
    Envelope,
)
from quadracode_ray.graphs.control import StopRegistry
from quadracode_ray.interfaces.fleet import TaskInfo, TaskResult
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.ray_metrics import install_ray_metrics
from runs.enqueue import api_thread_id, enqueue_run, run_id_for
from runs.host import RunHost

log = logging.getLogger(__name__)
ENVELOPE_KEY = "qr_envelope_id"
SYSTEM_LANE = "_system"
ORCHESTRATOR_WORKSPACE = "default"
"""The workspace the orchestrator graph's own workspace tools act on."""


class SubmitReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envelope_id: str
    thread_id: str
    status: str
    """``accepted``, or ``duplicate`` when that envelope id was submitted before."""


def build_graph(settings: Settings, **clients: Any) -> Any:
    """The orchestrator graph from ``settings.orchestrator_graph``, compiled with the checkpointer."""
    factory = load_object(settings.orchestrator_graph)
    lazy = {"model": lambda: _chat_model(settings),
            "workspace": lambda: LazyWorkspace(ORCHESTRATOR_WORKSPACE, settings),
            "guardrails": lambda: _guardrails(settings)}
    graph = call_with_supported(factory, lazy=lazy, settings=settings, **clients) if callable(factory) and \
        not hasattr(factory, "ainvoke") else factory
    if hasattr(graph, "compile") and not hasattr(graph, "ainvoke"):
        return graph.compile(checkpointer=clients["checkpointer"])
    if not hasattr(graph, "ainvoke"):
        raise TypeError(f"{settings.orchestrator_graph!r} gave {type(graph).__name__}, not a LangGraph graph")
    if getattr(graph, "checkpointer", None) in (None, False, True):
        graph.checkpointer = clients["checkpointer"]
    return graph


def _chat_model(settings: Settings) -> Any:
    from quadracode_ray.llm import make_chat_model

    return make_chat_model(settings.default_model, settings)


def _guardrails(settings: Settings) -> Any:
    from quadracode_ray.graphs.control import Guardrails

    return Guardrails.from_settings(settings)


@ray.remote(num_cpus=0)
class Orchestrator(RunHostCalls):
    def __init__(self, settings: Settings):
        install_ray_metrics(settings.actor_name_prefix)
        self.settings = settings
        self.handles = HandleCache(settings)
        self.runs_total = 0
        self.publisher = EventPublisher(self.handles, owner=ORCHESTRATOR)
        self.probes = Probes()
        self._background: set[asyncio.Task] = set()
        self._started = asyncio.get_running_loop().create_task(start_with_retries(self._start, "orchestrator"))

    async def _start(self) -> None:
        settings = self.settings
        if getattr(self, "fabric_pool", None) is None:  # kept across start retries
            self.fabric_pool = await open_fabric_pool(settings, name="orchestrator-fabric")
            self.checkpoint_pool = await open_async_pool(settings.database_url, min_size=1,
                                                         max_size=settings.db_pool_max_size,
                                                         name="orchestrator-graph")
        self.checkpointer = AsyncPostgresSaver(self.checkpoint_pool)
        self.store = TaskStore(self.fabric_pool)
        self.inbox = Inbox(ORCHESTRATOR, PostgresInboxStore(self.fabric_pool), self._handle,
                           lane_of=lambda env: env.thread_id or f"{SYSTEM_LANE}:{env.sender}",
                           max_attempts=settings.delivery_max_attempts, backoff_s=settings.delivery_backoff_s,
                           publish=self._publish, backlogged=lambda: self.publisher.full)
        self.dispatcher = Dispatcher(settings, self.store, self.handles, fail_task=self.inbox.deliver)
        self.delegation = FabricDelegation(self.store, self.dispatcher.schedule, self.dispatcher.cancel_on_agent)
        self.fleet = FleetActorClient(settings)
        self.stops = StopRegistry()
        self.graph = build_graph(settings, checkpointer=self.checkpointer, delegation=self.delegation,
                                 fleet=self.fleet, stop=self.stops)
        if getattr(self, "run_host", None) is None:
            # API runs of the orchestrator assistant execute here (runs/host.py), with this
            # actor's own delegation, fleet and stop registry.
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
        """Queue input for a thread: ``message`` (a user message), a raw graph ``input``, or
        ``resume`` (the answer to an interrupt, run as ``Command(resume=...)``).

        Returns once the input is durable; the run happens in the thread's lane. Pass
        ``envelope_id`` to make a retried submit safe (it is accepted once)."""
        await self._started
        if sum(x is not None for x in (input, message, resume)) != 1:
            raise ValueError("submit needs exactly one of message (text), input (a graph input dict) or resume")
        if not thread_id:
            raise ValueError("submit needs a thread_id")
        if message is not None:
            kind, payload = USER_MESSAGE, {"text": message}
        elif resume is not None:
            kind, payload = GRAPH_INPUT, {"command": {"resume": to_jsonable(resume)}}
        else:
            kind, payload = GRAPH_INPUT, {"input": to_jsonable(input)}
        fields: dict[str, Any] = {"sender": sender, "recipient": ORCHESTRATOR, "thread_id": thread_id,
                                  "kind": kind, "payload": payload}
        if envelope_id:
            fields["id"] = envelope_id
        receipt = await self.inbox.deliver(Envelope(**fields))
        return SubmitReceipt(envelope_id=receipt.envelope_id, thread_id=thread_id, status=receipt.status)

    def _publish(self, envelope: Envelope) -> None:
        """To the event bus, batched and off this actor's path (actors/publisher.py)."""
        self.publisher.put(envelope)

    # --- handling --------------------------------------------------------------------------------
    async def _handle(self, envelope: Envelope) -> None:
        if envelope.kind == USER_MESSAGE:
            text = envelope.payload.get("text")
            if not isinstance(text, str):
                raise ValueError("a user_message payload needs a text string")
            await self._run(envelope, {"messages": [{"role": "user", "content": text}]})
        elif envelope.kind == GRAPH_INPUT:
            command = envelope.payload.get("command")
            if isinstance(command, dict):  # e.g. {"resume": "continue"} after an interrupt
                await self._run(envelope, Command(**{k: v for k, v in command.items()
                                                     if k in ("resume", "update", "goto")}))
            else:
                await self._run(envelope, envelope.payload.get("input"))
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
        result = TaskResult.model_validate(envelope.payload)
        if not envelope.thread_id:
            raise ValueError("a task_result envelope needs the parent thread_id")
        self.dispatcher.release(result.agent_id)
        if not await self.store.finish(result, envelope.id):
            log.info("orchestrator: ignoring %s for task %s (already closed)", envelope.id, result.task_id)
            return
        fabric_metrics.tasks().inc(tags={"outcome": result.status})
        if await self._queue_result_run(envelope, result):
            return
        await self._run(envelope, {"task_results": [result.model_dump(mode="json")]})

    async def _queue_result_run(self, envelope: Envelope, result: TaskResult) -> bool:
        """On an API thread the result resumes the thread as a queued API run of its own (listed,
        joined and streamed like any run; after the thread's running run). False elsewhere."""
        thread_id = api_thread_id(envelope.thread_id)
        if thread_id is None:
            return False
        await self.run_host.ready()
        run_id = run_id_for(envelope.id)  # a redelivered result queues nothing twice
        queued = await enqueue_run(
            self.run_host.pool, run_id=run_id, thread_id=thread_id, graph_id="orchestrator",
            input={"task_results": [result.model_dump(mode="json")]}, executor=self.run_host.name,
            metadata={"source": "agent_result", "task_id": result.task_id, "agent_id": result.agent_id,
                      "envelope_id": envelope.id})
        if queued is None:
            return False
        await self.run_host.submit(run_id)
        return True

    async def _run(self, envelope: Envelope, graph_input: Any) -> None:
        thread_id = envelope.thread_id
        if not thread_id:
            raise ValueError(f"{envelope.kind} envelope {envelope.id} has no thread_id")
        config = {"configurable": {"thread_id": thread_id, "delegation": self.delegation, "fleet": self.fleet},
                  "metadata": {ENVELOPE_KEY: envelope.id}}
        state = await self.graph.aget_state({"configurable": {"thread_id": thread_id}})
        if (state.metadata or {}).get(ENVELOPE_KEY) == envelope.id:
            if not state.next:
                return  # this envelope's run completed; only its acknowledgement was lost
            graph_input = None  # resume from the checkpoint instead of applying the input twice
        started = time.monotonic()
        self._event(envelope, THREAD_RUN, {"status": "started", "envelope_id": envelope.id,
                                           "resumed": graph_input is None, "attempt": envelope.attempt})
        values: Any = None
        try:
            async for mode, chunk in self.graph.astream(graph_input, config,
                                                        stream_mode=["updates", "custom", "values"]):
                if mode == "values":
                    values = chunk
                else:  # node updates, and the graph's own events (task results folded in, tool steps)
                    self._event(envelope, THREAD_UPDATE, {"envelope_id": envelope.id, "mode": mode,
                                                          "update": to_jsonable(chunk)})
        except Exception as exc:
            fabric_metrics.runs().inc(tags={"outcome": "error"})
            self._event(envelope, THREAD_RUN, {"status": "error", "envelope_id": envelope.id,
                                               "error": f"{type(exc).__name__}: {exc}", "attempt": envelope.attempt})
            raise
        self.runs_total += 1
        fabric_metrics.runs().inc(tags={"outcome": "success"})
        fabric_metrics.run_seconds().observe(time.monotonic() - started)
        self._event(envelope, THREAD_RUN, {"status": "finished", "envelope_id": envelope.id,
                                           "values": to_jsonable(values)})

    def _event(self, cause: Envelope, kind: str, payload: dict[str, Any]) -> None:
        status = payload.get("status", "")
        suffix = f"{status}:{cause.attempt}" if kind == THREAD_RUN else f"{time.monotonic_ns()}"
        self._publish(Envelope(id=f"{kind}:{cause.id}:{suffix}", sender=ORCHESTRATOR, recipient="watchers",
                               kind=kind, thread_id=cause.thread_id, payload=payload))

    # --- queries and direct control ---------------------------------------------------------------
    async def get_state(self, thread_id: str) -> dict[str, Any]:
        await self._started
        state = await self.graph.aget_state({"configurable": {"thread_id": thread_id}})
        return {"values": to_jsonable(state.values), "next": list(state.next),
                "metadata": to_jsonable(state.metadata), "checkpoint_id":
                (state.config or {}).get("configurable", {}).get("checkpoint_id")}

    async def delegate(self, instruction: str, parent_thread_id: str, agent_id: str | None = None,
                       capability: str | None = None) -> TaskInfo:
        await self._started
        return await self.delegation.delegate(instruction, parent_thread_id=parent_thread_id, agent_id=agent_id,
                                              capability=capability)

    async def task_status(self, task_id: str) -> TaskInfo:
        await self._started
        return await self.delegation.task_status(task_id)

    async def cancel_task(self, task_id: str) -> TaskInfo:
        await self._started
        return await self.delegation.cancel_task(task_id)

    async def tasks(self, thread_id: str) -> list[TaskInfo]:
        await self._started
        return await self.store.of_thread(thread_id)

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
        self.stops.stop(thread_id)

    async def wait_idle(self) -> None:
        """Return when no envelope is queued or being handled (tests and orderly shutdowns)."""
        await self._started
        await self.inbox.wait_idle()
        await self.publisher.drain()

    async def stats(self) -> dict[str, Any]:
        await self._started
        return {"pid": os.getpid(), "inbox": self.inbox.stats(), "runs_total": self.runs_total,
                "publisher": self.publisher.stats(),
                "deliveries": self.inbox.store.stats(),
                "channel": {"served": self.channel.served if self.channel else None,
                            "sent": self.handles.channels.stats()},
                "dispatching": len(self.dispatcher._active), "agent_load": dict(self.dispatcher.load)}

    # --- API runs hosted here: the calls of RunHostCalls (runs/host.py) -------------------
    async def _run_host_ready(self) -> RunHost:
        await self._started
        return self.run_host
