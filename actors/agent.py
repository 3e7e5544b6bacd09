"""The agent actor: a worker spawned by the fleet that does delegated tasks.

It registers with the registry and heartbeats (registering again whenever the registry does
not know it, e.g. after the registry restarted); takes ``task`` envelopes through ``deliver``;
thinks with a pluggable brain (``actors.brains``); touches files and runs commands only
through the WorkspaceClient of its workspace, so it can die at any moment without losing
project state; replies to the sender with a ``task_result`` envelope, failures included; and
deregisters on shutdown. It is never restarted: a dead agent is replaced and its task
reassigned by the orchestrator, whose ``qr_tasks`` row is the truth about the task.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import OrderedDict
from typing import Any

import ray
from pydantic import JsonValue

from actors.brains import TaskRequest, load_brain
from actors.common import REGISTRY, HandleCache, actor_name, load_object, spawn_background
from actors.delivery import (
    DeliveryReceipt,
    Inbox,
    MemoryInboxStore,
    send,
    serve_deliveries,
    sweep_channel_sockets,
)
from actors.fabric_clients import fabric_configurable
from actors.local_channel import ChannelServer
from actors.probes import pong_for
from actors.publisher import EventPublisher
from actors.registry import Registration
from actors.run_hosting import RayForward, RunHostCalls
from actors.workspaces import LazyWorkspace
from quadracode_ray import tracing
from quadracode_ray.config import Settings
from quadracode_ray.envelope import CANCEL_TASK, PING, TASK, TASK_RESULT, Envelope
from quadracode_ray.interfaces.fleet import AgentInfo, TaskResult
from quadracode_ray.interfaces.workspace import WorkspaceClient
from quadracode_ray.ray_metrics import install_ray_metrics
from runs.execution import TRACE_METADATA_KEY
from runs.host import RunHost

log = logging.getLogger(__name__)
REMEMBERED_RESULTS = 1_000
TRACE_KEY = TRACE_METADATA_KEY  # in a task's metadata, and beside a result: the trace it belongs to
RESULT_DEADLINE_S = 3600.0


@ray.remote(max_restarts=0)
class AgentActor(RunHostCalls):
    def __init__(self, agent_id: str, kind: str, capabilities: list[str], workspace_id: str, settings: Settings,
                 metadata: dict[str, JsonValue] | None = None, workspace: WorkspaceClient | None = None):
        install_ray_metrics(settings.actor_name_prefix)
        tracing.configure_tracing(settings, "agent")
        self.agent_id, self.kind, self.capabilities = agent_id, kind, list(capabilities)
        self.workspace_id, self.settings = workspace_id, settings
        self.metadata = dict(metadata or {})
        self.handles = HandleCache(settings)
        self.publisher = EventPublisher(self.handles, owner=f"agent:{agent_id}")
        self.brain = load_brain(settings.agent_brain, settings=settings, agent_id=agent_id, kind=kind,
                                capabilities=self.capabilities)
        self._workspace = workspace
        self._workspace_lock = asyncio.Lock()
        self._running: dict[str, asyncio.Task] = {}
        self._cancel_requested: set[str] = set()
        self._results: OrderedDict[str, TaskResult] = OrderedDict()
        self._background: set[asyncio.Task] = set()
        self._heartbeats = 0
        self.inbox = Inbox(agent_id, MemoryInboxStore(), self._handle,
                           lane_of=lambda env: "control" if env.kind == CANCEL_TASK else "tasks",
                           max_attempts=settings.delivery_max_attempts, backoff_s=settings.delivery_backoff_s,
                           publish=self._publish, backlogged=lambda: self.publisher.full)
        self.inbox.open()
        self._run_host: RunHost | None = None  # made on the first API run of assistant `agent`
        self._run_workspace = LazyWorkspace(workspace_id, settings)  # its runs' workspace
        self._channel: ChannelServer | None = None  # same-node deliveries (actors/local_channel.py)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> AgentInfo:
        """Register and start heartbeating; the fleet awaits this before a spawn returns."""
        # Listening before registering: once the orchestrator can find this agent, it can reach it.
        self._channel = await serve_deliveries(self.handles, self.agent_id, self.deliver)
        spawn_background(self._background, sweep_channel_sockets(self.settings), name="sweep-sockets")
        info = await self._register()
        spawn_background(self._background, self._heartbeat_loop(), name=f"heartbeat:{self.agent_id}")
        return info

    async def _register(self) -> AgentInfo:
        me = ray.get_runtime_context().current_actor
        registration = Registration(agent_id=self.agent_id, kind=self.kind, capabilities=self.capabilities,
                                    handle=me, node=ray.get_runtime_context().get_node_id(),
                                    workspace_id=self.workspace_id,
                                    metadata={**self.metadata, "pid": os.getpid()})
        return await self.handles.get(REGISTRY).register.remote(registration)

    async def _heartbeat_loop(self) -> None:
        while True:
            # Heartbeats are periodic by nature: they are how the registry knows this agent lives.
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                answer = await self.handles.get(REGISTRY).heartbeat.remote(self.agent_id)
                self._heartbeats += 1
                if not answer["known"]:
                    log.warning("agent %s: unknown to the registry (restarted?); registering again", self.agent_id)
                    await self._register()
            except Exception as exc:  # noqa: BLE001 - the registry may be restarting; try at the next beat
                self.handles.forget(REGISTRY)
                log.warning("agent %s: heartbeat failed: %s", self.agent_id, exc)

    async def shutdown(self) -> None:
        """Deregister and stop; the fleet calls it before killing the actor."""
        for task in list(self._background):
            task.cancel()
        try:  # what this agent accepted reaches the log before it goes
            await asyncio.wait_for(self.publisher.drain(), timeout=5)
        except TimeoutError:
            log.warning("agent %s: %s envelopes not yet published at shutdown", self.agent_id,
                        self.publisher.stats()["unconfirmed"])
        try:
            await asyncio.wait_for(self.handles.get(REGISTRY).deregister.remote(self.agent_id), timeout=5)
        except Exception as exc:  # noqa: BLE001 - best effort: the sweep reaps it otherwise
            log.warning("agent %s: deregister failed: %s", self.agent_id, exc)
        if self._channel is not None:
            await self._channel.close()
        await self.inbox.close()

    async def ping(self) -> str:
        return self.agent_id

    async def pid(self) -> int:
        return os.getpid()

    async def status(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "running_tasks": sorted(self._running), "heartbeats": self._heartbeats,
                "inbox": self.inbox.stats(), "publisher": self.publisher.stats(),
                "channel": {"served": self._channel.served if self._channel else None,
                            "sent": self.handles.channels.stats()},
                "pid": os.getpid(),
                "running_runs": len(self._run_host.tasks) if self._run_host else 0,
                "warm": self._run_host is not None and self._run_workspace.started}

    async def warm_up(self) -> None:
        """Ready for a first run at once (the fleet's warm pool): the run host's pools and graphs,
        and the workspace's sandbox started."""
        await self.run_host.ready()
        await self._run_workspace.client()

    # --- API runs of assistant `agent` hosted here: RunHostCalls (runs/host.py) -----------
    @property
    def run_host(self) -> RunHost:
        if self._run_host is None:
            settings = self.settings
            local = {"workspace": self._run_workspace, "agent_id": self.agent_id}
            self._run_host = RunHost(actor_name(settings, self.agent_id), settings, settings.database_url,
                                     clients=lambda graph_id: fabric_configurable(graph_id, settings, **local),
                                     forward=RayForward(), min_connections=1,
                                     restartable=False)  # max_restarts=0: its runs are adopted, not recovered
        return self._run_host

    # --- envelopes ---------------------------------------------------------------------------
    async def deliver(self, envelope: Envelope) -> DeliveryReceipt:
        return await self.inbox.deliver(envelope)

    def _publish(self, envelope: Envelope) -> None:
        """To the event bus, batched and off the delivery path (actors/publisher.py)."""
        self.publisher.put(envelope)

    async def _handle(self, envelope: Envelope) -> None:
        started_ns = time.perf_counter_ns()  # a probe's "agent" segment starts here
        if envelope.kind == TASK:
            await self._do_task(envelope)
        elif envelope.kind == PING:
            await send(self.handles, pong_for(envelope, started_ns), restartable=True)
        elif envelope.kind == CANCEL_TASK:
            task_id = str(envelope.payload.get("task_id"))
            running = self._running.get(task_id)
            if running is not None:
                self._cancel_requested.add(task_id)
                running.cancel()
        else:
            raise ValueError(f"agents take {TASK}, {CANCEL_TASK} and {PING} envelopes, not {envelope.kind!r}")

    async def _do_task(self, envelope: Envelope) -> None:
        # The task continues the trace of the run that delegated it (quadracode_ray.tracing).
        metadata = envelope.payload.get("metadata")
        carried = metadata.get(TRACE_KEY) if isinstance(metadata, dict) else None
        with tracing.attached(carried if isinstance(carried, dict) else None), \
                tracing.scope(agent_id=self.agent_id, task_id=envelope.payload.get("task_id"),
                              thread_id=envelope.thread_id, workspace_id=self.workspace_id), \
                tracing.span("agent_task", **{"task.attempt": envelope.payload.get("attempt")}):
            await self._do_task_traced(envelope)

    async def _do_task_traced(self, envelope: Envelope) -> None:
        result = self._results.get(envelope.id)
        if result is None:  # not a retry of a reply that failed to send
            task = TaskRequest.model_validate({**envelope.payload, "agent_id": self.agent_id})
            result = await self._think(task)
            self._results[envelope.id] = result
            while len(self._results) > REMEMBERED_RESULTS:
                self._results.popitem(last=False)
        payload = result.model_dump(mode="json")
        if carrier := tracing.carrier():  # the result's run continues this trace
            payload[TRACE_KEY] = carrier
        reply = envelope.reply(TASK_RESULT, payload, id=f"{envelope.id}:result")
        # The orchestrator always comes back (max_restarts=-1): keep the result until it does.
        await send(self.handles, reply, restartable=True, deadline_s=RESULT_DEADLINE_S)

    async def _think(self, task: TaskRequest) -> TaskResult:
        run = asyncio.get_running_loop().create_task(self._run_brain(task), name=f"task:{task.task_id}")
        self._running[task.task_id] = run
        try:
            await asyncio.wait({run})
        finally:
            self._running.pop(task.task_id, None)
        if run.cancelled():
            if task.task_id in self._cancel_requested:
                self._cancel_requested.discard(task.task_id)
                return TaskResult(task_id=task.task_id, agent_id=self.agent_id, status="cancelled",
                                  error="cancelled on request")
            raise asyncio.CancelledError
        exc = run.exception()
        if exc is not None:
            return TaskResult(task_id=task.task_id, agent_id=self.agent_id, status="failed",
                              error=f"{type(exc).__name__}: {exc}")
        return run.result()

    async def _run_brain(self, task: TaskRequest) -> TaskResult:
        result = await self.brain.run(task, await self.workspace())
        if not isinstance(result, TaskResult):
            raise TypeError(f"the brain returned {type(result).__name__}, not a TaskResult")
        return result

    async def workspace(self) -> WorkspaceClient:
        """The workspace client, made on first use (starting a sandbox may take seconds)."""
        async with self._workspace_lock:
            if self._workspace is None:
                factory = load_object(self.settings.workspace_client_factory)
                made = factory(self.workspace_id, self.settings)
                self._workspace = await made if inspect.isawaitable(made) else made
            return self._workspace
