"""Runs outlive their executor: a killed executor's run resumes from its last checkpoint."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg
import ray
from psycopg.types.json import Jsonb

from quadracode_ray import NAMESPACE
from tests.api.test_runs_lifecycle import until
from tests.api.test_runs_stream import parse_sse, raw_stream
from tests.polling import eventually


def executor_of(database_url: str, run_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT executor FROM qr_runs WHERE run_id = %s", (run_id,)).fetchone()[0]


async def _first_step_done(lg_client, tid: str) -> bool:
    state = await lg_client.threads.get_state(tid)
    return state["values"].get("items") == ["first"] and state["next"] == ["patient"]


async def test_run_resumes_after_its_executor_is_killed(lg_client, api_database_url: str) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(tid, "durable", input={"items": []})
    await until(lambda: _first_step_done(lg_client, tid))
    ray.kill(ray.get_actor(executor_of(api_database_url, run["run_id"]), namespace=NAMESPACE), no_restart=False)
    # The restarted executor re-queues the run; the retry continues from the checkpoint, so
    # "first" is not run twice.
    assert await lg_client.runs.join(tid, run["run_id"]) == {"items": ["first", "attempt-2"]}
    assert (await lg_client.runs.get(tid, run["run_id"]))["status"] == "success"
    assert (await lg_client.threads.get(tid))["status"] == "idle"


async def test_queued_and_running_runs_survive_a_restart_of_every_executor(lg_client, api_database_url: str) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    running = await lg_client.runs.create(tid, "durable", input={"items": []})
    await until(lambda: _first_step_done(lg_client, tid))
    queued = await lg_client.runs.create(tid, "echo", input={"items": ["q"]})
    # Every executor dies for good, as when the whole system stops.
    with psycopg.connect(api_database_url) as conn:
        names = [row[0] for row in conn.execute("SELECT DISTINCT executor FROM qr_runs WHERE executor IS NOT NULL")]
    for name in names:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    # Joining recreates the executors; each recovers the runs recorded against it.
    assert await lg_client.runs.join(tid, queued["run_id"]) == {"items": ["first", "attempt-2", "q", "a"]}
    assert (await lg_client.runs.get(tid, running["run_id"]))["status"] == "success"
    assert (await lg_client.threads.get(tid))["status"] == "idle"


def stored_event_ids(database_url: str, run_id: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM qr_run_events WHERE run_id = %s ORDER BY seq",
                                               (run_id,))]


async def test_resumable_stream_resumes_from_last_event_id_after_its_executor_dies(
        api_url: str, lg_client, api_database_url: str) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(tid, "durable", input={"items": []}, stream_resumable=True,
                                      stream_mode=["values", "updates"])
    run_id = run["run_id"]

    async def first_attempt_events_stored() -> list[int]:
        ids = stored_event_ids(api_database_url, run_id)
        return ids if len(ids) >= 3 else []

    # The events are in Postgres while the run is still running (it hangs on its first attempt).
    first_ids = await until(first_attempt_events_stored)
    assert (await lg_client.runs.get(tid, run_id))["status"] == "running"
    ray.kill(ray.get_actor(executor_of(api_database_url, run_id), namespace=NAMESPACE), no_restart=False)
    _, raw = await raw_stream(api_url, f"/threads/{tid}/runs/{run_id}/stream", method="GET",
                              headers={"Last-Event-ID": str(first_ids[0])})
    events = parse_sse(raw)
    assert "metadata" not in [event for event, _, _ in events]  # a resumed join: the events after the id only
    ids = [int(event_id) for _, _, event_id in events]
    # What the dead attempt produced after the given id, then the retry's own events, numbered after it.
    assert ids[:2] == first_ids[1:3]
    assert ids == sorted(set(ids)) and ids[-1] > first_ids[-1]
    assert [data for event, data, _ in events if event == "values"][-1] == {"items": ["first", "attempt-2"]}
    assert (await lg_client.runs.get(tid, run_id))["status"] == "success"


def _insert_claimed_without_handover(database_url: str, thread_id: str, assistant_id: str, host: str,
                                     item: str) -> str:
    """A run inserted 'running' for ``host`` as a wait or stream inserts it, whose request then
    died before the call that hands the row over."""
    run_id = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "SELECT * FROM qr_create_run(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, thread_id, assistant_id, "echo", Jsonb({}),
             Jsonb({"input": {"items": [item]}, "graph_id": "echo", "config": {}, "stream_mode": ["values"]}),
             "enqueue", host, None, 0.0, False, False, False, True))
    return run_id


async def _a_host_and_assistant(lg_client, database_url: str) -> tuple[str, str]:
    other = (await lg_client.threads.create())["thread_id"]
    probe = await lg_client.runs.create(other, "echo", input={"items": []})
    await lg_client.runs.join(other, probe["run_id"])
    return executor_of(database_url, probe["run_id"]), probe["assistant_id"]


async def test_a_run_inserted_claimed_but_never_handed_over_is_requeued_by_its_host(
        lg_client, api_database_url: str) -> None:
    # A run that can start at once is inserted already 'running' for its host, which gets its row
    # in the request's next call; when that call never comes (the request died in between) and
    # nobody reads the run, the host's sweep puts it back in the queue and runs it.
    host, assistant_id = await _a_host_and_assistant(lg_client, api_database_url)
    tid = (await lg_client.threads.create())["thread_id"]
    run_id = _insert_claimed_without_handover(api_database_url, tid, assistant_id, host, "lost")
    assert (await lg_client.runs.get(tid, run_id))["status"] == "running"

    async def succeeded() -> dict | None:  # runs.get reads the row only: it starts nothing
        run = await lg_client.runs.get(tid, run_id)
        return run if run["status"] == "success" else None

    run = await eventually(succeeded, timeout=60, what="the sweep to run the lost run")
    assert run["kwargs"]["config"]["metadata"]["run_attempt"] == 2  # re-queued, then claimed
    assert (await lg_client.runs.join(tid, run_id))["items"][0] == "lost"


async def test_a_run_inserted_claimed_but_never_handed_over_starts_at_once_when_a_reader_comes(
        lg_client, api_database_url: str) -> None:
    # The same lost handover, joined: the reader's call to the host claims the run, finds it
    # recorded as running there with no task for it, and the host requeues and claims it at once
    # (its started_at is moved ahead, so the sweep, which takes only rows older than its grace,
    # cannot be what ran it).
    host, assistant_id = await _a_host_and_assistant(lg_client, api_database_url)
    tid = (await lg_client.threads.create())["thread_id"]
    run_id = _insert_claimed_without_handover(api_database_url, tid, assistant_id, host, "joined")
    with psycopg.connect(api_database_url) as conn:
        conn.execute("UPDATE qr_runs SET started_at = now() + interval '1 hour' WHERE run_id = %s", (run_id,))
    joined = await asyncio.wait_for(lg_client.runs.join(tid, run_id), 30)
    assert joined["items"][0] == "joined"
    run = await lg_client.runs.get(tid, run_id)
    assert run["status"] == "success"
    assert run["kwargs"]["config"]["metadata"]["run_attempt"] == 2  # requeued and claimed, no death counted


async def test_a_v3_session_replays_exactly_what_it_missed_after_the_executor_dies(
        api_url: str, lg_client, api_database_url: str) -> None:
    """The v3 thread stream of a run whose executor dies: the stream goes on with the retry's
    events, and a reconnect with ``since`` gets exactly the rest, numbered as a full replay."""
    from tests.api.test_replica_death import _completed, _v3_events

    tid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        started = await http.post(f"/threads/{tid}/commands", json={
            "id": 1, "method": "run.start", "params": {"assistant_id": "durable", "input": {"items": []}}})
    assert started.json()["type"] == "success", started.text
    run_id = started.json()["result"]["run_id"]
    await until(lambda: _first_step_done(lg_client, tid))  # the first attempt hangs in "patient" now

    def first_step_seen(events: list[dict]) -> bool:
        return any(e["method"] == "values" and e["params"]["data"].get("items") == ["first"] for e in events)

    before = await _v3_events(api_url, tid, None, first_step_seen, "before the executor dies")
    assert first_step_seen(before), before
    ray.kill(ray.get_actor(executor_of(api_database_url, run_id), namespace=NAMESPACE), no_restart=False)
    # As a client would: read on after the last event seen, reconnecting with since if the stream
    # breaks, until the run's end (the full replay below checks nothing was lost or doubled).
    after: list[dict] = []
    deadline = asyncio.get_running_loop().time() + 240
    while not (after and _completed(after)) and asyncio.get_running_loop().time() < deadline:
        after += await _v3_events(api_url, tid, (after or before)[-1]["seq"],
                                  lambda events: bool(events) and _completed(events), "after the executor died")
    assert after and _completed(after), after
    whole = await _v3_events(api_url, tid, None, _completed, "whole replay")
    got = before + after
    assert [e["seq"] for e in got] == sorted({e["seq"] for e in got})  # in order, none twice
    assert [(e["seq"], e["event_id"]) for e in got] == [(e["seq"], e["event_id"]) for e in whole]
    assert len({e["event_id"] for e in got}) == len(got)
    assert [e["params"]["data"] for e in got if e["method"] == "values"][-1] == {"items": ["first", "attempt-2"]}
