"""The API's Serve replica dies (SIGKILL of its process) in the middle of a streamed run.

The run executes on its host actor, never in the replica, so it goes on; Serve starts a new
replica; the client picks the stream up where it broke with Last-Event-ID and gets every event
once, nothing lost, and joining the run gives its final values. The same for a v3 thread
session (``client.threads.stream``): reconnecting with ``since`` gets exactly the events it
missed. It kills the replica of the session's API app (the modules after this one run against
its successor).
"""

from __future__ import annotations

import os
import signal
import uuid

import httpx
import orjson
import pytest
import ray
from langgraph_sdk import get_client

from serve_app.app import APP_NAME
from tests.api.test_runs_stream import parse_sse, raw_stream
from tests.polling import eventually


@pytest.fixture
def fragile_url(api_url: str) -> str:
    if os.environ.get("QUADRACODE_TEST_API_URL"):
        pytest.skip("the API runs outside this session's Ray (QUADRACODE_TEST_API_URL): no replica to kill")
    return api_url


def _replica_pids(app_name: str = APP_NAME) -> set[int]:
    """The processes of an app's live replicas (a dead one's name may linger a moment)."""
    pids = set()
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app_name}#"):
            try:
                handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                pids.add(ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()), timeout=30))
            except (ValueError, ray.exceptions.RayError):
                pass
    return pids


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/ok")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_stream_broken_by_the_replicas_death_resumes_on_its_successor(fragile_url: str) -> None:
    client = get_client(url=fragile_url)
    thread_id = (await client.threads.create())["thread_id"]
    body = {"assistant_id": "echo", "input": {"items": ["x"], "sleep": 3}, "stream_resumable": True,
            "stream_mode": ["values", "custom"]}
    before: list[tuple[str, object, str | None]] = []
    (old_pid,) = _replica_pids()
    killed_pid = old_pid
    async with httpx.AsyncClient(base_url=fragile_url, timeout=60) as http:
        async with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
            assert response.status_code == 200
            run_id = response.headers["content-location"].rstrip("/").split("/")[-1]
            buffer = b""
            with pytest.raises(httpx.HTTPError):  # the connection dies with the replica
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
                    if complete:
                        before += parse_sse(complete + b"\r\n\r\n")
                    # The run is inside its 3 s node (its custom event is out): kill the replica now.
                    if any(event == "custom" for event, _, _ in before) and old_pid:
                        os.kill(old_pid, signal.SIGKILL)
                        old_pid = 0
    assert old_pid == 0, f"the stream ended before the run reached its slow node: {before}"
    assert [event for event, _, _ in before] == ["metadata", "values", "custom"]

    await eventually(lambda: _answers(fragile_url), timeout=90, what="Serve's new replica", interval=0.25)
    assert _replica_pids() and killed_pid not in _replica_pids()  # a new process answers
    last_id = before[-1][2]
    _, raw = await raw_stream(fragile_url, f"/threads/{thread_id}/runs/{run_id}/stream", method="GET",
                              headers={"Last-Event-ID": str(last_id)})
    after = parse_sse(raw)
    # As the official server, a join resumed after an event id sends no metadata event.
    assert [(event, data) for event, data, _ in after] == [("values", {"items": ["x", "a"], "sleep": 3})]

    # Nothing lost, nothing twice: the two halves are the run's whole stream, replayed from its start.
    _, raw = await raw_stream(fragile_url, f"/threads/{thread_id}/runs/{run_id}/stream", method="GET",
                              headers={"Last-Event-ID": "-1"})
    whole = [(event, event_id) for event, _, event_id in parse_sse(raw)[1:]]
    assert whole == [(event, event_id) for event, _, event_id in before[1:] + after]
    assert (await client.runs.get(thread_id, run_id))["status"] == "success"
    assert (await client.runs.join(thread_id, run_id)) == {"items": ["x", "a"], "sleep": 3}


async def _v3_events(url: str, thread_id: str, since: int | None, until, what: str) -> list[dict]:
    """The thread's v3 events (SSE) after ``since``, until ``until(events)`` holds; what was read
    when the connection breaks (the replica died)."""
    body = {"channels": ["values", "updates", "custom", "lifecycle", "input"]}
    if since is not None:
        body["since"] = since
    events: list[dict] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http, \
                http.stream("POST", f"/threads/{thread_id}/stream/events", json=body) as response:
            assert response.status_code == 200, what
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events.append(orjson.loads(line[5:]))
                    if until(events):
                        return events
    except httpx.HTTPError:
        pass
    return events


def _completed(events: list[dict]) -> bool:
    """The events end with the root's ``completed`` (an empty read is not: its assertion then
    shows what was read, not an IndexError)."""
    if not events:
        return False
    last = events[-1]
    return last["method"] == "lifecycle" and not last["params"]["namespace"] and \
        last["params"]["data"]["event"] == "completed"


async def test_a_v3_session_reconnects_with_since_after_the_replicas_death(fragile_url: str) -> None:
    thread_id = str(uuid.uuid4())  # minted by the client, as the SDK does
    async with httpx.AsyncClient(base_url=fragile_url, timeout=60) as http:
        started = await http.post(f"/threads/{thread_id}/commands", json={
            "id": 1, "method": "run.start",
            "params": {"assistant_id": "echo", "input": {"items": ["x"], "sleep": 3}}})
    assert started.json()["type"] == "success", started.text
    (old_pid,) = _replica_pids()

    def reached_the_slow_node(events: list[dict]) -> bool:
        # The input's values come out as the run enters its 3 s node (the echo graph's custom
        # event is not on the v3 wire: it registers no custom transformer, as on the official
        # server): kill the replica now, mid-session.
        if any(e["method"] == "values" for e in events):
            os.kill(old_pid, signal.SIGKILL)
            return True
        return False

    before = await _v3_events(fragile_url, thread_id, None, reached_the_slow_node, "first connection")
    assert [e["method"] for e in before] == ["lifecycle", "values"], before
    await eventually(lambda: _answers(fragile_url), timeout=90, what="Serve's new replica", interval=0.25)
    assert old_pid not in _replica_pids()
    # The SDK reconnects with the last seq it saw: the successor replica sends exactly the rest.
    after = await _v3_events(fragile_url, thread_id, before[-1]["seq"], _completed, "after the death")
    assert _completed(after), after
    whole = await _v3_events(fragile_url, thread_id, None, _completed, "whole replay")
    got = before + after
    assert [e["seq"] for e in got] == sorted({e["seq"] for e in got})  # in order, none twice
    assert [(e["seq"], e["event_id"], e["method"]) for e in got] == \
        [(e["seq"], e["event_id"], e["method"]) for e in whole]
    assert [e["params"]["data"] for e in got if e["method"] == "values"] == [
        {"items": ["x"], "sleep": 3}, {"items": ["x", "a"], "sleep": 3}]



def _root(events: list[dict], phase: str) -> list[dict]:
    return [e for e in events if e["method"] == "lifecycle" and not e["params"]["namespace"]
            and e["params"]["data"]["event"] == phase]


async def test_a_v3_session_resumes_past_a_rolled_back_run_on_a_new_replica(fragile_url: str) -> None:
    """A rollback deletes its run with its events, so the successor replica's tape lacks a run the
    client saw live: the events after the client's ``since`` are still exactly the later runs'
    (each run is numbered in a block of its own, fixed when it was queued)."""
    client = get_client(url=fragile_url)
    thread_id = str(uuid.uuid4())

    async def v3_run(items: list[str]) -> None:
        async with httpx.AsyncClient(base_url=fragile_url, timeout=60) as http:
            started = await http.post(f"/threads/{thread_id}/commands", json={
                "id": 1, "method": "run.start", "params": {"assistant_id": "echo", "input": {"items": items}}})
        assert started.json()["type"] == "success", started.text

    await v3_run(["first"])
    seen = await _v3_events(fragile_url, thread_id, None, _completed, "the first run")
    assert _completed(seen), seen
    doomed = await client.runs.create(thread_id, "echo", input={"items": ["doomed"], "sleep": 60})

    def doomed_is_in_its_slow_node(events: list[dict]) -> bool:
        return any(e["method"] == "values" and "doomed" in e["params"]["data"].get("items", []) for e in events)

    seen += await _v3_events(fragile_url, thread_id, seen[-1]["seq"], doomed_is_in_its_slow_node, "the doomed run")
    assert doomed_is_in_its_slow_node(seen), seen
    await client.runs.create(thread_id, "echo", input={"items": ["after"]}, multitask_strategy="rollback")
    seen += await _v3_events(fragile_url, thread_id, seen[-1]["seq"], _completed, "the run after the rollback")
    assert _completed(seen) and len(_root(seen, "running")) == 3, seen

    async def rolled_back() -> bool:
        return doomed["run_id"] not in {run["run_id"] for run in await client.runs.list(thread_id)}

    await eventually(rolled_back, timeout=60, what="the rolled-back run deleted")
    (old_pid,) = _replica_pids()
    os.kill(old_pid, signal.SIGKILL)  # the tape the client saw live dies with the replica
    await eventually(lambda: _answers(fragile_url), timeout=90, what="Serve's new replica", interval=0.25)
    assert old_pid not in _replica_pids()
    await v3_run(["last"])
    after = await _v3_events(fragile_url, thread_id, seen[-1]["seq"], _completed, "after the death")
    # The new run whole, from its start: none of its events numbered at or below the cursor.
    assert _completed(after) and after[0] == _root(after, "running")[0] and len(_root(after, "running")) == 1, after
    assert any(e["method"] == "values" and "last" in e["params"]["data"].get("items", []) for e in after), after
    whole = await _v3_events(fragile_url, thread_id, None, lambda events: len(_root(events, "completed")) == 3,
                             "whole replay")
    assert len(_root(whole, "running")) == 3  # the rolled-back run is gone from the tape
    assert [(e["seq"], e["event_id"]) for e in whole if e["seq"] > seen[-1]["seq"]] == \
        [(e["seq"], e["event_id"]) for e in after]
