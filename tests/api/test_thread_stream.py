"""GET /threads/{thread_id}/stream (the SDK's threads.join_stream): a watcher sees the events of
every run of the thread, resumes after an event id, and gets the official server's errors."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from tests.api.test_auth import (
    ALICE_KEY,
    BOB_KEY,
    secured_url,  # noqa: F401 (a fixture: a second deployment, with API keys)
)
from tests.api.test_runs_stream import parse_sse


async def _watch_until_runs_done(stream, runs_done: int, on_event=None) -> list:
    """Parts of a thread stream until ``runs_done`` runs ended (``on_event`` sees each part)."""
    parts = []
    async for part in stream:
        parts.append(part)
        if on_event is not None:
            await on_event(part)
        if sum(1 for p in parts if p.event == "metadata" and p.data.get("status") == "run_done") == runs_done:
            return parts
    raise AssertionError(f"the thread stream ended early: {parts}")


async def _two_runs_watched(lg_client, stream_mode) -> tuple[str, list[str], list]:
    """A thread with a first run (slow enough to be active when the watcher joins) and a second
    run queued once the watcher saw the first one start; the watcher's parts until both ended."""
    thread_id = (await lg_client.threads.create())["thread_id"]
    first = await lg_client.runs.create(thread_id, "echo", input={"items": ["one"], "sleep": 1.0})
    run_ids = [first["run_id"]]

    async def queue_second(part) -> None:
        if part.event == "metadata" and part.data.get("run_id") == first["run_id"] and len(run_ids) == 1:
            second = await lg_client.runs.create(thread_id, "echo", input={"items": ["two"], "sleep": 0},
                                                 stream_resumable=True)
            run_ids.append(second["run_id"])

    stream = await lg_client.threads.join_stream(thread_id, stream_mode=stream_mode)
    parts = await asyncio.wait_for(_watch_until_runs_done(stream, 2, queue_second), 60)
    return thread_id, run_ids, parts


async def test_watcher_sees_every_run_of_the_thread(lg_client) -> None:
    thread_id, run_ids, parts = await _two_runs_watched(lg_client, "run_modes")
    assert len(run_ids) == 2
    starts = [p.data["run_id"] for p in parts if p.event == "metadata" and "attempt" in p.data]
    ends = [p.data["run_id"] for p in parts if p.event == "metadata" and p.data.get("status") == "run_done"]
    assert starts == run_ids and ends == run_ids
    values = [p.data["items"] for p in parts if p.event == "values"]
    assert ["one", "a"] in values and ["one", "a", "two", "a"] in values
    ids = [p.id for p in parts]
    assert all(ids) and len(set(ids)) == len(ids)
    # Ids grow within a run (the official server's ids sort too).
    for run_parts in _by_run(parts).values():
        keys = [tuple(int(n) for n in p.id.split("-")) for p in run_parts]
        assert keys == sorted(keys)


def _by_run(parts: list) -> dict[str, list]:
    """The parts of each run (the run's id part is its metadata event's id prefix)."""
    prefixes = {p.id.split("-")[0]: p.data["run_id"] for p in parts if p.event == "metadata" and "attempt" in p.data}
    runs: dict[str, list] = {run_id: [] for run_id in prefixes.values()}
    for part in parts:
        runs[prefixes[part.id.split("-")[0]]].append(part)
    return runs


async def test_lifecycle_mode_sends_each_runs_start_and_end_only(lg_client) -> None:
    _, run_ids, parts = await _two_runs_watched(lg_client, "lifecycle")
    assert [(p.event, p.data) for p in parts] == [
        ("metadata", {"run_id": run_ids[0], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run_ids[0]}),
        ("metadata", {"run_id": run_ids[1], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run_ids[1]}),
    ] or [(p.event, p.data) for p in parts] == [  # the second run may start before the first one's end is read
        ("metadata", {"run_id": run_ids[0], "attempt": 1}),
        ("metadata", {"run_id": run_ids[1], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run_ids[0]}),
        ("metadata", {"status": "run_done", "run_id": run_ids[1]}),
    ]


async def test_resume_after_an_event_id(lg_client) -> None:
    thread_id, run_ids, parts = await _two_runs_watched(lg_client, ["run_modes"])
    second = _by_run(parts)[run_ids[1]]
    # The second run's stream after its first values event: the rest of it, then its end.
    values_at = next(i for i, p in enumerate(second) if p.event == "values")
    expected = [(p.event, p.data, p.id) for p in second[values_at + 1:]]
    stream = await lg_client.threads.join_stream(thread_id, last_event_id=second[values_at].id)
    resumed = await asyncio.wait_for(_watch_until_runs_done(stream, 1), 60)
    assert [(p.event, p.data, p.id) for p in resumed] == expected
    assert resumed[-1].data == {"status": "run_done", "run_id": run_ids[1]}


async def test_sse_frames_and_stream_modes_query_param(api_url: str, lg_client) -> None:
    thread_id = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(thread_id, "echo", input={"items": [], "sleep": 1.0})
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        # The official server's own parameter (comma separated) is taken as the SDK's stream_mode.
        async with http.stream("GET", f"/threads/{thread_id}/stream",
                               params={"stream_modes": "lifecycle,state_update"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if b"run_done" in raw:
                    break
    assert raw.startswith(b"event: metadata\r\ndata: ")
    assert [(e, d) for e, d, _ in parse_sse(raw)] == [
        ("metadata", {"run_id": run["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run["run_id"]})]


async def test_errors_as_the_official_server(lg_client) -> None:
    thread_id = (await lg_client.threads.create())["thread_id"]
    with pytest.raises(UnprocessableEntityError):
        async for _ in await lg_client.threads.join_stream("not-a-uuid"):
            pass
    with pytest.raises(NotFoundError):
        async for _ in await lg_client.threads.join_stream(str(uuid.uuid4())):
            pass
    with pytest.raises(UnprocessableEntityError, match="Invalid stream mode"):
        async for _ in await lg_client.threads.join_stream(thread_id, stream_mode="values"):
            pass
    with pytest.raises(UnprocessableEntityError, match="last-event-id"):
        async for _ in await lg_client.threads.join_stream(thread_id, last_event_id="abc"):
            pass


async def test_only_the_threads_owner_can_watch_it(secured_url: str) -> None:  # noqa: F811
    alice = get_client(url=secured_url, api_key=ALICE_KEY)
    bob = get_client(url=secured_url, api_key=BOB_KEY)
    thread_id = (await alice.threads.create())["thread_id"]
    with pytest.raises(NotFoundError):
        async for _ in await bob.threads.join_stream(thread_id):
            pass
    run = await alice.runs.create(thread_id, "echo", input={"items": [], "sleep": 1.0})
    stream = await alice.threads.join_stream(thread_id, stream_mode="lifecycle")
    parts = await asyncio.wait_for(_watch_until_runs_done(stream, 1), 60)
    assert parts[-1].data == {"status": "run_done", "run_id": run["run_id"]}
