"""The v3 streams of one thread on a replica share one reader of the thread's tape
(serve_app/runs/v3_tape.py): a stream whose client leaves takes nothing from the others."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson

from tests.api.run_gate import RunGate
from tests.api.test_oracle_v3 import READ_TIMEOUT_S, _root_phase

BODY = {"channels": ["values", "lifecycle"]}


async def _events(response: httpx.Response):
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield orjson.loads(line[5:])


async def test_a_stream_that_leaves_does_not_end_another_on_the_same_thread(api_url: str, tmp_path) -> None:
    thread_id = str(uuid.uuid4())
    gate = RunGate(tmp_path)  # the run stays in its node until the first client left
    async with httpx.AsyncClient(base_url=api_url, timeout=READ_TIMEOUT_S) as http:
        started = await http.post(f"/threads/{thread_id}/commands", json={
            "id": 1, "method": "run.start",
            "params": {"assistant_id": "echo", "input": gate.held(items=["x"])}})
        assert started.json()["type"] == "success", started.text
        url = f"/threads/{thread_id}/stream/events"
        async with asyncio.timeout(READ_TIMEOUT_S):
            # The first stream opens the thread's tape; its input's values come from the run's
            # executor, so the reader is following the run when this client leaves.
            async with http.stream("POST", url, json=BODY) as first:
                async for event in _events(first):
                    if event["method"] == "values":
                        break
                async with http.stream("POST", url, json=BODY) as second:
                    seen = _events(second)
                    async for event in seen:
                        if event["method"] == "values":
                            break
                    await first.aclose()  # the first client leaves while the run waits in its node
                    gate.release()
                    phases = [_root_phase(event) async for event in _until_the_end(seen)]
    assert phases[-1] == "completed", phases


async def _until_the_end(events):
    async for event in events:
        yield event
        if _root_phase(event) not in (None, "running"):
            return
