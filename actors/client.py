"""How callers (the API, the panel, notebooks, tests) talk to the fabric.

    client = FabricClient(settings)                       # or FabricClient.from_handles(handles)
    receipt = await client.submit_user_message("thread-1", "hello")
    async for logged in client.watch_thread("thread-1", cursor=receipt_cursor): ...
    values = await client.run_and_wait("thread-1", "hello", timeout_s=60)

``watch_thread`` streams the event bus filtered by thread: ``thread_update`` envelopes carry
the graph's updates, ``thread_run`` the run outcomes (status started/finished/error with the
final values), and the agent envelopes of the thread pass by too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ray

from actors.common import EVENTS, ORCHESTRATOR, HandleCache
from actors.events import LoggedEnvelope
from actors.orchestrator import SubmitReceipt
from quadracode_ray.config import Settings
from quadracode_ray.envelope import DEAD_LETTER, THREAD_RUN, EnvelopeFilter

WATCH_BACKPRESSURE = 1_000


class RunFailed(RuntimeError):
    """The orchestrator's graph run for the submitted input ended with an error."""


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
        cursor = await self.cursor()
        if text is not None:
            receipt = await self.submit_user_message(thread_id, text)
        else:
            receipt = await self.submit_input(thread_id, graph_input or {})
        return await self._outcome(thread_id, receipt, cursor, timeout_s)

    async def run_and_wait_resume(self, thread_id: str, value: Any, *, timeout_s: float = 300.0) -> dict[str, Any]:
        """Resume an interrupted thread with ``value`` and wait for that run to finish."""
        cursor = await self.cursor()
        receipt = await self.resume(thread_id, value)
        return await self._outcome(thread_id, receipt, cursor, timeout_s)

    async def _outcome(self, thread_id: str, receipt: SubmitReceipt, cursor: int, timeout_s: float) -> dict[str, Any]:

        async def outcome() -> dict[str, Any]:
            # Failed attempts are retried by the orchestrator; only a dead letter is final.
            async for logged in self.watch_thread(thread_id, cursor=cursor, kinds=[THREAD_RUN, DEAD_LETTER]):
                payload = logged.envelope.payload
                if logged.envelope.kind == DEAD_LETTER:
                    if (payload.get("envelope") or {}).get("id") == receipt.envelope_id:
                        raise RunFailed(str(payload.get("error")))
                elif payload.get("envelope_id") == receipt.envelope_id and payload.get("status") == "finished":
                    return payload.get("values") or {}
            raise RunFailed("the event stream ended before the run finished")

        return await asyncio.wait_for(outcome(), timeout_s)
