"""How Python callers with Ray (notebooks, tests, tools on a cluster node) talk to the fabric.

    client = FabricClient(settings)                       # or FabricClient.from_handles(handles)
    thread = str(uuid.uuid4())                            # a thread id is a UUID, as in the API
    receipt = await client.submit_user_message(thread, "hello")   # a run in qr_runs: receipt.run_id
    async for seq, event, data in client.run_events(receipt.run_id): ...  # the run's stream
    values = await client.run_and_wait(thread, "hello", timeout_s=60)

Every input becomes a run of the orchestrator graph hosted by the orchestrator actor, the same
run a client of the HTTP API sees (``threads.join_stream``, ``runs.join``). ``watch_thread``
streams the event bus filtered by thread: the envelopes (user messages, tasks, agents' results).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import ray

from actors.common import EVENTS, ORCHESTRATOR, HandleCache
from actors.events import LoggedEnvelope
from actors.orchestrator import SubmitReceipt
from quadracode_ray.config import Settings
from quadracode_ray.envelope import EnvelopeFilter

WATCH_BACKPRESSURE = 1_000


class RunFailed(RuntimeError):
    """The run of the submitted input ended with an error (after its attempts) or was interrupted."""


class FabricClient:
    def __init__(self, settings: Settings):
        self.handles = HandleCache(settings)

    @classmethod
    def from_handles(cls, handles: Any) -> FabricClient:
        client = cls(handles.settings)
        client.handles.put(EVENTS, handles.events)
        client.handles.put(ORCHESTRATOR, handles.orchestrator)
        return client

    async def cursor(self) -> int:
        """The event bus's position now: watch from it to see only what happens next."""
        return (await self.handles.get(EVENTS).stats.remote())["last_seq"]

    async def submit_user_message(self, thread_id: str, text: str, *, envelope_id: str | None = None) -> SubmitReceipt:
        return await self.handles.get(ORCHESTRATOR).submit.remote(thread_id, message=text, envelope_id=envelope_id)

    async def submit_input(self, thread_id: str, graph_input: dict[str, Any], *,
                           envelope_id: str | None = None) -> SubmitReceipt:
        return await self.handles.get(ORCHESTRATOR).submit.remote(thread_id, graph_input, envelope_id=envelope_id)

    async def resume(self, thread_id: str, value: Any, *, envelope_id: str | None = None) -> SubmitReceipt:
        """Answer an interrupt: the thread continues with ``Command(resume=value)``."""
        return await self.handles.get(ORCHESTRATOR).submit.remote(thread_id, resume=value, envelope_id=envelope_id)

    async def stop_thread(self, thread_id: str) -> None:
        """Emergency stop of the thread's current run."""
        await self.handles.get(ORCHESTRATOR).stop_thread.remote(thread_id)

    async def get_state(self, thread_id: str) -> dict[str, Any]:
        return await self.handles.get(ORCHESTRATOR).get_state.remote(thread_id)

    async def watch(self, filter: EnvelopeFilter | None = None, *, cursor: int | None = None) -> AsyncIterator[LoggedEnvelope]:
        """Stream envelopes from the bus as they are logged; stops the generator when you stop.

        If the bus restarts meanwhile, the stream resumes from the last envelope received,
        reading what it missed from the log: nothing is skipped or repeated."""
        if cursor is None:
            cursor = await self.cursor()
        while True:
            stream = self.handles.get(EVENTS).watch.options(
                num_returns="streaming", _generator_backpressure_num_objects=WATCH_BACKPRESSURE,
            ).remote(filter, cursor)
            try:
                async for ref in stream:
                    logged = await ref
                    cursor = logged.seq
                    yield logged
                return
            except ray.exceptions.RayActorError:
                self.handles.forget(EVENTS)
                # The bus restarts (max_restarts=-1); a short pause before re-subscribing.
                await asyncio.sleep(0.2)
            finally:
                ray.cancel(stream)

    def watch_thread(self, thread_id: str, *, cursor: int | None = None,
                     kinds: list[str] | None = None) -> AsyncIterator[LoggedEnvelope]:
        return self.watch(EnvelopeFilter(thread_id=thread_id, kinds=kinds), cursor=cursor)

    async def run_and_wait(self, thread_id: str, text: str | None = None, *, graph_input: dict[str, Any] | None = None,
                           timeout_s: float = 300.0) -> dict[str, Any]:
        """Submit and wait for that input's run to finish; returns the final state values."""
        if text is not None:
            receipt = await self.submit_user_message(thread_id, text)
        else:
            receipt = await self.submit_input(thread_id, graph_input or {})
        return await self.wait_run(receipt.run_id, timeout_s=timeout_s)

    async def run_and_wait_resume(self, thread_id: str, value: Any, *, timeout_s: float = 300.0) -> dict[str, Any]:
        """Resume an interrupted thread with ``value`` and wait for that run to finish."""
        receipt = await self.resume(thread_id, value)
        return await self.wait_run(receipt.run_id, timeout_s=timeout_s)

    async def wait_run(self, run_id: str, *, timeout_s: float = 300.0) -> dict[str, Any]:
        """The run's final values once it ended; RunFailed when it ended otherwise than in success.

        Follows the run across a restart of the orchestrator (its host re-queues the run)."""

        async def outcome() -> tuple[str, bytes | None]:
            while True:
                try:
                    return await self.handles.get(ORCHESTRATOR).wait_run.remote(run_id)
                except ray.exceptions.RayActorError:
                    self.handles.forget(ORCHESTRATOR)
                    await asyncio.sleep(0.2)  # the actor restarts (max_restarts=-1); then ask again

        status, output = await asyncio.wait_for(outcome(), timeout_s)
        values = orjson.loads(output) if output is not None else None
        if status != "success":
            error = (values or {}).get("__error__") if isinstance(values, dict) else None
            raise RunFailed(f"run {run_id} ended {status}: {(error or {}).get('message') or error or ''}")
        return values if isinstance(values, dict) else {}

    async def run_events(self, run_id: str, after: int = -1) -> AsyncIterator[tuple[int, str, bytes]]:
        """The run's stream, as the API serves it: (seq, event, JSON data), ending with ``__end__``."""
        stream = self.handles.get(ORCHESTRATOR).run_events.options(num_returns="streaming").remote(run_id, after)
        try:
            async for ref in stream:
                for item in await ref:
                    yield item
        finally:
            ray.cancel(stream)
