"""GET /threads/{thread_id}/stream (the SDK's threads.join_stream): a watcher sees the events of
every run of the thread, resumes after an event id, and gets the official server's errors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from serve_app.runs.thread_follow import POLL_SAFETY_S
from tests.api.run_gate import RunGate
from tests.api.test_auth import (
    ALICE_KEY,
    BOB_KEY,
    secured_url,  # noqa: F401 (a fixture: a second deployment, with API keys)
)
from tests.api.test_runs_stream import parse_sse
from tests.polling import eventually


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


async def _two_runs_watched(lg_client, stream_mode, tmp_path) -> tuple[str, list[str], list]:
    """A thread with a first run (held active until the watcher saw it start, so the watcher
    joins a running run) and a second run queued once the watcher saw the first one start;
    the watcher's parts until both ended."""
    thread_id = (await lg_client.threads.create())["thread_id"]
    gate = RunGate(tmp_path)
    first = await lg_client.runs.create(thread_id, "echo", input=gate.held(items=["one"]))
    run_ids = [first["run_id"]]

    async def queue_second(part) -> None:
        if part.event == "metadata" and part.data.get("run_id") == first["run_id"] and len(run_ids) == 1:
            second = await lg_client.runs.create(thread_id, "echo", input={"items": ["two"], "sleep": 0},
                                                 stream_resumable=True)
            run_ids.append(second["run_id"])
            gate.release()

    stream = await lg_client.threads.join_stream(thread_id, stream_mode=stream_mode)
    parts = await asyncio.wait_for(_watch_until_runs_done(stream, 2, queue_second), 60)
    return thread_id, run_ids, parts


async def test_watcher_sees_every_run_of_the_thread(lg_client, tmp_path) -> None:
    thread_id, run_ids, parts = await _two_runs_watched(lg_client, "run_modes", tmp_path)
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


async def test_lifecycle_mode_sends_each_runs_start_and_end_only(lg_client, tmp_path) -> None:
    _, run_ids, parts = await _two_runs_watched(lg_client, "lifecycle", tmp_path)
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


async def test_resume_after_an_event_id(lg_client, tmp_path) -> None:
    thread_id, run_ids, parts = await _two_runs_watched(lg_client, ["run_modes"], tmp_path)
    second = _by_run(parts)[run_ids[1]]
    # The second run's stream after its first values event: the rest of it, then its end.
    values_at = next(i for i, p in enumerate(second) if p.event == "values")
    expected = [(p.event, p.data, p.id) for p in second[values_at + 1:]]
    stream = await lg_client.threads.join_stream(thread_id, last_event_id=second[values_at].id)
    resumed = await asyncio.wait_for(_watch_until_runs_done(stream, 1), 60)
    assert [(p.event, p.data, p.id) for p in resumed] == expected
    assert resumed[-1].data == {"status": "run_done", "run_id": run_ids[1]}


async def test_sse_frames_and_stream_modes_query_param(api_url: str, lg_client, tmp_path) -> None:
    thread_id = (await lg_client.threads.create())["thread_id"]
    gate = RunGate(tmp_path)  # the run stays active until the watcher saw it start
    run = await lg_client.runs.create(thread_id, "echo", input=gate.held(items=[]))
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        # The official server's own parameter (comma separated) is taken as the SDK's stream_mode.
        async with http.stream("GET", f"/threads/{thread_id}/stream",
                               params={"stream_modes": "lifecycle,state_update"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if b"attempt" in raw:
                    gate.release()
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


async def test_only_the_threads_owner_can_watch_it(secured_url: str, tmp_path) -> None:  # noqa: F811
    alice = get_client(url=secured_url, api_key=ALICE_KEY)
    bob = get_client(url=secured_url, api_key=BOB_KEY)
    thread_id = (await alice.threads.create())["thread_id"]
    with pytest.raises(NotFoundError):
        async for _ in await bob.threads.join_stream(thread_id):
            pass
    gate = RunGate(tmp_path)  # the run stays active until alice's watcher saw it start
    run = await alice.runs.create(thread_id, "echo", input=gate.held(items=[]))

    async def release(part) -> None:
        gate.release()

    stream = await alice.threads.join_stream(thread_id, stream_mode="lifecycle")
    parts = await asyncio.wait_for(_watch_until_runs_done(stream, 1, release), 60)
    assert parts[-1].data == {"status": "run_done", "run_id": run["run_id"]}



async def _thread_with_a_run(lg_client) -> str:
    """A thread with one finished echo run (so its state has a graph and a last writer)."""
    thread_id = (await lg_client.threads.create())["thread_id"]
    await lg_client.runs.wait(thread_id, "echo", input={"items": ["one"]})
    return thread_id


class Watcher:
    """A thread stream read in the background: its parts, and when each arrived."""

    def __init__(self, stream) -> None:
        self.parts: list = []
        self.arrived: list[float] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream) -> None:
        async for part in stream:
            self.parts.append(part)
            self.arrived.append(time.monotonic())

    async def until(self, predicate, what: str) -> None:
        async def probe() -> bool:
            if self.task.done():
                self.task.result()  # the stream failed or ended: say so
                raise AssertionError(f"the thread stream ended early: {self.parts}")
            return predicate(self.parts)
        await eventually(probe, what=what)

    async def until_run_done(self, run_id: str) -> None:
        done = {"status": "run_done", "run_id": run_id}
        await self.until(lambda parts: any(p.event == "metadata" and p.data == done for p in parts),
                         f"the end of run {run_id}")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def _watch_rows(database_url: str, thread_id: str) -> int:
    """Replicas that registered a watch of the thread (the NOTIFY trigger's condition)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM qr_thread_watches WHERE thread_id = %s",
                                        (thread_id,))).fetchone()
    return row[0]


async def test_state_update_goes_to_watchers_that_ask_for_it(lg_client, api_database_url: str) -> None:
    thread_id = await _thread_with_a_run(lg_client)
    runs = Watcher(await lg_client.threads.join_stream(thread_id))  # run_modes: no state_update there
    both = Watcher(await lg_client.threads.join_stream(thread_id, stream_mode=["lifecycle", "state_update"]))
    try:
        # A run both watchers see first (created after their watch registered, so it is theirs
        # however quickly it ends): they are live before the update.
        await eventually(lambda: _watch_rows(api_database_url, thread_id), what="the watch registered")
        first = await lg_client.runs.create(thread_id, "echo", input={"items": ["two"]})
        await runs.until_run_done(first["run_id"])
        await both.until_run_done(first["run_id"])
        await lg_client.threads.update_state(thread_id, {"items": ["by hand"]})
        await both.until(lambda parts: any(p.event == "state_update" for p in parts), "the state_update event")
        state = await lg_client.threads.get_state(thread_id)
        assert state["values"]["items"] == ["one", "a", "two", "a", "by hand"]
        second = await lg_client.runs.create(thread_id, "echo", input={"items": ["three"]})
        await runs.until_run_done(second["run_id"])
        await both.until_run_done(second["run_id"])
    finally:
        await runs.close()
        await both.close()
    assert [(p.event, p.data) for p in both.parts] == [
        ("metadata", {"run_id": first["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": first["run_id"]}),
        ("state_update", {"state": state, "thread_id": thread_id}),
        ("metadata", {"run_id": second["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": second["run_id"]}),
    ]
    assert not any(p.event == "state_update" for p in runs.parts)
    assert any(p.event == "values" for p in runs.parts)


async def test_state_updates_resume_after_an_event_id(lg_client) -> None:
    thread_id = await _thread_with_a_run(lg_client)
    await lg_client.threads.update_state(thread_id, {"items": ["first"]})
    await lg_client.threads.update_state(thread_id, {"items": ["second"]})
    replay = Watcher(await lg_client.threads.join_stream(thread_id, stream_mode="state_update", last_event_id="-"))
    try:
        await replay.until(lambda parts: len(parts) >= 2, "both state updates replayed")
    finally:
        await replay.close()
    assert [p.data["state"]["values"]["items"][-1] for p in replay.parts] == ["first", "second"]
    assert all(re.fullmatch(r"\d+-0", p.id) for p in replay.parts)
    resumed = Watcher(await lg_client.threads.join_stream(thread_id, stream_mode="state_update",
                                                          last_event_id=replay.parts[0].id))
    try:
        await resumed.until(bool, "the state update after the resumed one")
    finally:
        await resumed.close()
    assert [(p.id, p.data) for p in resumed.parts] == [(replay.parts[1].id, replay.parts[1].data)]


async def _listening_connections(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = 'LISTEN qr_thread_activity'")).fetchone()
    return row[0]


async def test_runs_queued_elsewhere_are_seen_at_once(lg_client, api_database_url: str) -> None:
    """A run inserted by another path than the watcher's replica (the orchestrator's agent_result
    path: enqueue_run, then a push to the run's host) reaches the watcher through NOTIFY, far
    sooner than its safety poll; a state update too. The replica's watchers share one LISTEN
    connection, and a watcher that leaves takes its watch row with it."""
    import ray

    from actors.run_executor import executor_names
    from quadracode_ray import NAMESPACE
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence import open_async_pool
    from runs.enqueue import enqueue_run
    from runs.settings import RunSettings

    thread_id = await _thread_with_a_run(lg_client)
    other_thread_id = await _thread_with_a_run(lg_client)
    watcher = Watcher(await lg_client.threads.join_stream(thread_id, stream_mode=["lifecycle", "state_update"]))
    other = Watcher(await lg_client.threads.join_stream(other_thread_id, stream_mode="lifecycle"))
    executor = executor_names(Settings(_env_file=None), api_database_url)[0]
    pool = await open_async_pool(api_database_url, name="test-enqueue")
    latencies: list[float] = []
    try:
        await eventually(lambda: _watch_rows(api_database_url, thread_id), what="the watch registered")
        await eventually(lambda: _watch_rows(api_database_url, other_thread_id), what="the other watch registered")
        # One LISTEN connection for both watchers (while it listens, the poll is POLL_SAFETY_S).
        assert await _listening_connections(api_database_url) == 1
        for n in range(2):
            seen, started = len(watcher.parts), time.monotonic()
            await lg_client.threads.update_state(thread_id, {"items": [f"update {n}"]})
            await watcher.until(lambda parts, seen=seen: len(parts) > seen, "the state_update event")
            assert watcher.parts[seen].event == "state_update"
            latencies.append(watcher.arrived[seen] - started)

            run_id = str(uuid.uuid4())
            seen, started = len(watcher.parts), time.monotonic()
            assert await enqueue_run(pool, run_id=run_id, thread_id=thread_id,
                                     settings=RunSettings(graph_id="echo", input={"items": [f"queued {n}"]}),
                                     metadata={"source": "agent_result"}, executor=executor)
            await ray.get_actor(executor, namespace=NAMESPACE).submit_run.remote(run_id)
            await watcher.until_run_done(run_id)
            assert watcher.parts[seen].data == {"run_id": run_id, "attempt": 1}
            latencies.append(watcher.arrived[seen] - started)
    finally:
        await watcher.close()
        await other.close()
        await pool.close()
    # Found by a poll instead, each would wait up to POLL_SAFETY_S.
    assert max(latencies) < POLL_SAFETY_S / 2, latencies
    print(f"pickup latencies (update, run, update, run): {[round(x, 3) for x in latencies]}")

    async def watch_rows_gone() -> bool:
        return await _watch_rows(api_database_url, thread_id) + await _watch_rows(api_database_url, other_thread_id) == 0
    await eventually(watch_rows_gone, what="the watch rows removed when their watchers left")


async def test_a_thread_created_with_supersteps_has_its_state_update(lg_client) -> None:
    thread = await lg_client.threads.create(
        graph_id="echo", supersteps=[{"updates": [{"values": {"items": ["seeded"]}, "as_node": "step"}]},
                                     {"updates": [{"values": {"items": ["more"]}, "as_node": "step"}]}])
    replay = Watcher(await lg_client.threads.join_stream(thread["thread_id"], stream_mode="state_update",
                                                         last_event_id="-"))
    try:
        await replay.until(bool, "the state update of the supersteps")
    finally:
        await replay.close()
    # One event for the whole batch, with the state after it, as the official server.
    assert [(p.event, p.data) for p in replay.parts] == [
        ("state_update", {"state": await lg_client.threads.get_state(thread["thread_id"]),
                          "thread_id": thread["thread_id"]})]


async def test_watchers_survive_the_loss_of_the_listen_connection(lg_client, api_database_url: str) -> None:
    """The LISTEN connection killed under a watcher: the watcher polls meanwhile, the replica
    listens again on a new connection, and later runs still reach the watcher."""
    thread_id = await _thread_with_a_run(lg_client)
    watcher = Watcher(await lg_client.threads.join_stream(thread_id, stream_mode="lifecycle"))
    try:
        await eventually(lambda: _watch_rows(api_database_url, thread_id), what="the watch registered")
        await eventually(lambda: _listening_connections(api_database_url), what="the replica listening")
        async with await psycopg.AsyncConnection.connect(api_database_url, autocommit=True) as conn:
            killed = await (await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query = 'LISTEN qr_thread_activity'")).fetchall()
        assert killed == [(True,)]
        run = await lg_client.runs.create(thread_id, "echo", input={"items": ["after the loss"], "sleep": 0.5})
        await watcher.until_run_done(run["run_id"])
        await eventually(lambda: _listening_connections(api_database_url), what="the replica listening again")
        again = await lg_client.runs.create(thread_id, "echo", input={"items": ["listening again"]})
        await watcher.until_run_done(again["run_id"])
    finally:
        await watcher.close()
    assert [p.data.get("run_id") for p in watcher.parts] == [run["run_id"]] * 2 + [again["run_id"]] * 2
