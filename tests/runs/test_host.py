"""The run host without Ray: real Postgres, the API tests' graphs, runs queued as the fabric queues them."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import psycopg
import pytest

from quadracode_ray.config import Settings
from runs import queue
from runs.enqueue import enqueue_run, run_id_for
from runs.host import RunHost
from runs.settings import RunSettings
from tests.api.graphs import TEST_GRAPHS
from tests.api.run_gate import RunGate
from tests.polling import eventually


@pytest.fixture
async def host(database_url: str, tmp_path) -> RunHost:
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path, graphs=TEST_GRAPHS)
    host = RunHost(f"test-host-{uuid.uuid4().hex[:6]}", settings, database_url)
    await host.ready()
    yield host
    await host.close()


async def _thread(host: RunHost) -> str:
    thread_id = str(uuid.uuid4())
    async with host.pool.connection() as conn:
        await conn.execute("INSERT INTO qr_threads (thread_id, metadata) VALUES (%s, '{}')", (thread_id,))
    return thread_id


async def _queue(host: RunHost, thread_id: str, graph_input: dict, cause: str | None = None) -> str:
    run_id = run_id_for(cause or uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id,
                             settings=RunSettings(graph_id="echo", input=graph_input), metadata={"source": "test"}, executor=host.name)
    return run_id


async def _thread_status(host: RunHost, thread_id: str) -> str:
    async with host.pool.connection() as conn:
        row = await (await conn.execute("SELECT status FROM qr_threads WHERE thread_id = %s", (thread_id,))).fetchone()
    return row["status"]


async def test_a_cancel_landing_between_the_claim_and_the_runs_first_step_still_ends_the_run(host: RunHost):
    """The race behind a once-seen 300 s hang: the claim has created the run's task, which has not
    run a step yet, when the cancel arrives. Cancelling such a task skips its body, so the run's end
    was never recorded: it stayed 'running', its thread busy, and a join waited forever."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    await host._claim_and_start(run_id)  # the run's task exists and has not begun
    assert run_id in host.tasks
    assert await host.cancel(run_id) is True
    assert (await queue.run_status(host.pool, run_id))["status"] == "interrupted"
    assert await _thread_status(host, thread_id) == "idle"
    assert host.tasks == {} and host.slots._value == host.settings.run_executor_concurrency
    ends = [e for e in host.streams[run_id].events if e.event == "__end__"]
    assert len(ends) == 1 and host.streams[run_id].finished


async def test_a_cancel_before_the_handover_of_a_run_inserted_claimed_ends_it_and_the_late_handover_starts_nothing(
        host: RunHost):
    """A wait or stream inserts its run claimed for the host, and its next call hands the row over.
    Its client leaving in between (the cause of a flaky on_disconnect=cancel test under load) sent
    the cancel to a host that did not hold the run: the cancel was lost, and the sweep later ran
    the run in full."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run  # as qr_create_run inserts it
    assert claimed["status"] == "running"
    assert await host.cancel(run_id) is True
    assert (await queue.run_status(host.pool, run_id))["status"] == "interrupted"
    assert await _thread_status(host, thread_id) == "idle"
    started = host.runs_started
    assert await host.wait(run_id, start=True, run=claimed) == ("interrupted", None)  # the late handover
    assert host.runs_started == started and host.tasks == {} and run_id not in host.starting


async def test_a_cancel_right_after_the_handover_stops_the_run_it_started(host: RunHost):
    """The handover's task has not run a step when the cancel comes: the cancel waits for it (the
    run counts as starting from the handover on) instead of taking it for one never handed over."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run
    host._start(run_id, claimed)
    assert await host.cancel(run_id) is True
    assert host.runs_started == 1 and host.tasks == {}
    assert (await queue.run_status(host.pool, run_id))["status"] == "interrupted"
    ends = [e for e in host.streams[run_id].events if e.event == "__end__"]
    assert len(ends) == 1 and host.streams[run_id].finished


async def test_a_start_of_the_host_itself_while_a_cancel_asks_the_queue_does_not_run_the_run_it_cancels(
        host: RunHost, monkeypatch):
    """The host's own start (the thread's previous run ended, the sweep) claimed the pending run
    while its cancel waited for the thread's lock: the cancel, taking the row for one inserted
    claimed and never handed over, marked it interrupted while the host ran it."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    real_cancel_pending = queue.cancel_pending

    async def started_first(pool, rid: str, action: str, **options):
        host._submit_local(rid)
        await asyncio.gather(*host._background)  # that start has run its course
        return await real_cancel_pending(pool, rid, action, **options)

    monkeypatch.setattr(queue, "cancel_pending", started_first)
    assert await host.cancel(run_id) is True
    assert (await queue.run_status(host.pool, run_id))["status"] == "interrupted"
    assert host.tasks == {} and host.runs_started == 0


async def test_a_second_cancel_does_not_undo_the_first_ones_revocation(host: RunHost):
    """A stream whose client left cancels its run twice (its relay and its response): the second,
    finding the row already interrupted, used to lift the revocation, and the late handover ran
    the interrupted run."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run
    assert sorted(await asyncio.gather(host.cancel(run_id), host.cancel(run_id))) == [False, True]
    assert await host.wait(run_id, start=True, run=claimed) == ("interrupted", None)
    assert host.runs_started == 0 and host.tasks == {}


async def test_a_cancel_that_fails_leaves_no_revocation_behind(host: RunHost, monkeypatch):
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 0})

    async def unreachable(*args, **kwargs):
        raise psycopg.OperationalError("the database went away")

    monkeypatch.setattr(queue, "cancel_pending", unreachable)
    with pytest.raises(psycopg.OperationalError):
        await host.cancel(run_id)
    assert run_id not in host.revoked


async def test_a_reader_that_read_the_row_before_the_cancel_of_an_unheld_run_gets_its_end(host: RunHost, monkeypatch):
    """The handover comes while the cancel asks the queue: the reader reads the row as running,
    the cancel commits, and the reader then waits on a stream; it must find the end there."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": [], "sleep": 30})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run
    asking, row_read, reader_may_go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_run_status, real_cancel_pending = queue.run_status, queue.cancel_pending

    async def held_after_reading(pool, rid: str):
        row = await real_run_status(pool, rid)
        row_read.set()
        await reader_may_go_on.wait()
        return row

    async def after_the_read(pool, rid: str, action: str, **options):
        asking.set()
        await row_read.wait()
        return await real_cancel_pending(pool, rid, action, **options)

    monkeypatch.setattr(queue, "run_status", held_after_reading)
    monkeypatch.setattr(queue, "cancel_pending", after_the_read)
    cancelling = asyncio.create_task(host.cancel(run_id))
    await asyncio.wait_for(asking.wait(), 10)
    waiting = asyncio.create_task(host.wait(run_id, start=True, run=claimed))  # the handover
    assert await asyncio.wait_for(cancelling, 10) is True
    reader_may_go_on.set()
    assert await asyncio.wait_for(waiting, 10) == ("interrupted", None)
    assert host.runs_started == 0


async def test_a_run_queued_by_the_fabric_runs_once_and_a_repeat_is_ignored(host: RunHost):
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": ["x"]}, cause="envelope-1")
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id,
                             settings=RunSettings(graph_id="echo", input={}), metadata={}, executor=host.name) is False
    await host.submit(run_id)

    async def finished():
        row = await queue.run_status(host.pool, run_id)
        return row if row["status"] == "success" else None

    row = await eventually(finished, timeout=30, what="the queued run to succeed")
    assert row["metadata"]["source"] == "test" and row["executor"] == host.name
    assert await _thread_status(host, thread_id) == "idle"
    assert await enqueue_run(host.pool, run_id=run_id_for("x"), thread_id=str(uuid.uuid4()),
                             settings=RunSettings(graph_id="echo", input={}), metadata={}, executor=host.name) is None


async def test_a_run_queued_while_the_thread_runs_starts_after_it_and_the_thread_stays_busy(host: RunHost, tmp_path):
    """What an agent's result does on a busy thread: it waits for the running run, never lost."""
    thread_id = await _thread(host)
    gate = RunGate(tmp_path)  # the first run stays running until the second one was seen waiting
    first = await _queue(host, thread_id, gate.held(items=[]))
    await host.submit(first)

    async def running():
        return (await queue.run_status(host.pool, first))["status"] == "running"

    await eventually(running, timeout=30, what="the first run to start")
    second = await _queue(host, thread_id, {"items": ["result"]}, cause="result-envelope")
    await host.submit(second)  # the claim finds the thread running: it waits for the first run's end
    assert (await queue.run_status(host.pool, second))["status"] == "pending"
    assert await _thread_status(host, thread_id) == "busy"
    gate.release()

    async def both_done():
        rows = [await queue.run_status(host.pool, r) for r in (first, second)]
        return rows if all(r["status"] == "success" for r in rows) else None

    done_first, done_second = await eventually(both_done, timeout=30, what="both runs to succeed")
    assert done_first["ended_at"] <= done_second["started_at"]
    assert await _thread_status(host, thread_id) == "idle"


async def test_cancelling_a_run_that_waits_for_a_slot_does_not_wait_for_the_slot(database_url: str, tmp_path):
    """With every slot taken, a cancel of a queued run answers at once instead of waiting for a
    running run to end (a start waiting for a slot has not claimed the run: the queue cancels it)."""
    host, busy = await _one_slot_taken(database_url, tmp_path)
    try:
        waiting = await _waiting_for_the_slot(host, {"items": []})
        assert await asyncio.wait_for(host.cancel(waiting), timeout=10) is True
        assert (await queue.run_status(host.pool, waiting))["status"] == "interrupted"
        assert await host.cancel(busy) is True
        await eventually(lambda: _slot_free(host), timeout=10, what="the waiting start to give its slot back")
        assert (await queue.run_status(host.pool, waiting))["status"] == "interrupted"  # never started
    finally:
        await host.close()


async def test_a_cancel_racing_the_claim_of_a_run_that_waited_for_a_slot_still_ends_it(database_url: str, tmp_path,
                                                                                     monkeypatch):
    """The slot frees while the cancel asks the queue (the start claims the run first, so the queue
    has nothing pending to cancel): the cancel stops the task the start made. It was lost (the run
    ran to its end) 23 times in 985 in the soak."""
    host, busy = await _one_slot_taken(database_url, tmp_path)
    try:
        waiting = await _waiting_for_the_slot(host, {"items": [], "sleep": 60})
        real_cancel_pending = queue.cancel_pending

        async def claimed_first(pool, run_id: str, action: str, **options):
            if run_id == waiting:  # the slot frees and the waiting start claims the run, now
                assert await host.cancel(busy) is True
                await eventually(lambda: _claimed(host, waiting), timeout=10, what="the waiting start's claim")
            return await real_cancel_pending(pool, run_id, action, **options)

        monkeypatch.setattr(queue, "cancel_pending", claimed_first)
        assert await asyncio.wait_for(host.cancel(waiting), timeout=30) is True
        assert (await queue.run_status(host.pool, waiting))["status"] == "interrupted"
    finally:
        await host.close()


async def _one_slot_taken(database_url: str, tmp_path) -> tuple[RunHost, str]:
    """A host of one slot, and the run that holds it (a 60 s sleep)."""
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path, graphs=TEST_GRAPHS,
                        run_executor_concurrency=1)
    host = RunHost(f"test-host-{uuid.uuid4().hex[:6]}", settings, database_url)
    await host.ready()
    busy = await _queue(host, await _thread(host), {"items": [], "sleep": 60})
    await host.submit(busy)
    await eventually(lambda: _running(host, busy), timeout=30, what="the slot's run to start")
    return host, busy


async def _waiting_for_the_slot(host: RunHost, graph_input: dict) -> str:
    waiting = await _queue(host, await _thread(host), graph_input)
    await host.submit(waiting)
    await eventually(lambda: _waits_for_a_slot(host, waiting), timeout=10, what="the start to wait for a slot")
    return waiting


async def _claimed(host: RunHost, run_id: str) -> bool:
    return (await queue.run_status(host.pool, run_id))["status"] == "running"


async def _running(host: RunHost, run_id: str) -> bool:
    return run_id in host.tasks


async def _waits_for_a_slot(host: RunHost, run_id: str) -> bool:
    return run_id in host.awaiting_slot


async def _slot_free(host: RunHost) -> bool:
    return host.slots._value == 1 and not host.starting


async def test_a_reader_that_looks_up_a_run_while_it_runs_here_gets_all_its_events(host: RunHost, monkeypatch):
    """A race that explains an A2A stream once seen without its progress under load: a reader came to
    the host before the run's push, looked its row up, and the push started and ended the run
    while that query was out; the reader took the row's 'success' for a run held elsewhere and
    answered only the end (no values, no output), though every event was in this host's memory."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": ["x"]})
    real_run_status = queue.run_status

    async def run_status_answered_after_the_run_ended(pool, wanted: str):
        await host.submit(run_id)  # the push, landing while the reader's query is out
        await eventually(lambda: _finished(host, run_id), timeout=30, what="the run to end")
        return await real_run_status(pool, wanted)

    monkeypatch.setattr(queue, "run_status", run_status_answered_after_the_run_ended)
    seen = [item async for items in host.events(run_id) for item in items]
    assert [event for _, event, _ in seen] == ["values", "values", "__end__"]
    assert orjson.loads(seen[-1][2]) == {"status": "success", "output": {"items": ["x", "a"]}}


async def _finished(host: RunHost, run_id: str) -> bool:
    stream = host.streams.get(run_id)
    return stream is not None and stream.finished and run_id not in host.tasks


async def test_a_run_whose_graph_raises_is_tried_again_up_to_its_attempts_and_keeps_its_place(host: RunHost):
    """Runs of user messages and agents' results get attempts when the graph raises (as the inbox
    retried a failing handler); the run queued behind waits for the last one."""
    thread_id = await _thread(host)
    run_id = run_id_for(uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id, executor=host.name, metadata={},
                             settings=RunSettings(graph_id="echo", input={"fail": True}, error_attempts=3,
                                                  error_backoff_s=0.05))
    behind = await _queue(host, thread_id, {"items": ["after"], "fail": False})
    await host.submit(run_id)
    status, _ = await asyncio.wait_for(host.wait(run_id), timeout=60)
    row = await queue.run_status(host.pool, run_id)
    assert (status, row["status"], row["attempt"]) == ("error", "error", 3)
    assert [e.event for e in host.streams[run_id].events].count("error") == 3  # one stream, every attempt
    later = await eventually(lambda: _succeeded(host, behind), timeout=30, what="the run behind it")
    assert later["started_at"] >= row["ended_at"]


async def _run_to_its_end(host: RunHost, graph_input: dict) -> tuple[str, str, bytes, dict]:
    """Queue a run on a new thread, run it here; its id, status, output and row at its end."""
    run_id = await _queue(host, await _thread(host), graph_input)
    await host.submit(run_id)
    status, output = await asyncio.wait_for(host.wait(run_id), timeout=60)
    return run_id, status, output, await queue.run_status(host.pool, run_id)


def _refuse_checkpoint_writes(host: RunHost, monkeypatch, times: int) -> list[bool]:
    """The first ``times`` checkpoint writes fail as during a Postgres restart; returns their log."""
    import psycopg

    real_put, refused = host.saver.aput, []

    async def refusing(*args, **kwargs):
        if len(refused) < times:
            refused.append(True)
            raise psycopg.OperationalError("the database system is shutting down")
        return await real_put(*args, **kwargs)

    monkeypatch.setattr(host.saver, "aput", refusing)
    return refused


async def test_a_run_whose_database_went_away_mid_run_starts_again_and_succeeds_once(host: RunHost, monkeypatch):
    """Postgres restarting under a run (its checkpoint write refused) is no error of the run: it is
    started again from its last checkpoint and applied once (the fault suite met it for real:
    tests/reliability/test_faults.py, a run ended in error after a 10 s Postgres restart)."""
    refused = _refuse_checkpoint_writes(host, monkeypatch, 1)
    run_id, status, output, row = await _run_to_its_end(host, {"items": ["x"]})
    assert refused and (status, row["status"], row["attempt"]) == ("success", "success", 2)
    assert orjson.loads(output)["items"] == ["x", "a"]  # its node applied once
    assert "error" not in [e.event for e in host.streams[run_id].events]  # no error a client would see


async def test_a_run_can_start_its_thread(host: RunHost):
    thread_id = str(uuid.uuid4())
    run_id = run_id_for(uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id, executor=host.name, metadata={},
                             settings=RunSettings(graph_id="echo", input={"items": ["x"]}), create_thread=True)
    async with host.pool.connection() as conn:
        thread = await (await conn.execute("SELECT metadata, status FROM qr_threads WHERE thread_id = %s",
                                           (thread_id,))).fetchone()
    assert thread["status"] == "busy" and thread["metadata"]["graph_id"] == "echo"
    await host.submit(run_id)
    assert (await asyncio.wait_for(host.wait(run_id), timeout=60))[0] == "success"


async def _succeeded(host: RunHost, run_id: str) -> dict | None:
    row = await queue.run_status(host.pool, run_id)
    return row if row["status"] == "success" else None


async def test_a_run_the_fabric_queues_gets_the_threads_assistants_config(host: RunHost):
    """An agent's result resumes a thread with its assistant's settings, as a client's run would."""
    assistant_id, thread_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with host.pool.connection() as conn:
        await conn.execute("INSERT INTO qr_assistants (assistant_id, graph_id, name, config) VALUES (%s, 'factory', "
                           "'worded', %s)", (assistant_id, orjson.dumps({"configurable": {"word": "assistant's"}})
                                             .decode()))
        await conn.execute("INSERT INTO qr_threads (thread_id, metadata) VALUES (%s, %s)",
                           (thread_id, orjson.dumps({"assistant_id": assistant_id}).decode()))
    run_id = run_id_for(uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id, executor=host.name, metadata={},
                             settings=RunSettings(graph_id="factory", input={"items": []}))
    await host.submit(run_id)
    status, output = await asyncio.wait_for(host.wait(run_id), timeout=60)
    assert (status, orjson.loads(output)) == ("success", {"items": ["assistant's"]})


async def test_outage_retries_error_retries_and_executor_deaths_each_have_their_own_budget(host: RunHost, monkeypatch):
    """A Postgres outage that retried a run more often than ``run_max_attempts`` neither fails it
    nor costs it its ``error_attempts`` or its executor-death budget (they shared ``attempt``)."""
    import runs.host

    monkeypatch.setattr(runs.host, "OUTAGE_BACKOFF_S", 0.02)
    real_put = host.saver.aput
    refused = _refuse_checkpoint_writes(host, monkeypatch, 4)
    _, status, output, row = await _run_to_its_end(host, {"items": ["x"]})
    assert len(refused) == 4 and status == "success" and orjson.loads(output)["items"] == ["x", "a"]
    assert (row["outage_retries"], row["error_retries"], row["executor_deaths"], row["attempt"]) == (4, 0, 0, 5)
    monkeypatch.setattr(host.saver, "aput", real_put)

    # A run that met 5 outages before (its counters as they would be) and whose graph then raises:
    # its error_attempts=2 still give it one retry (by the shared counter, attempt 6 >= 2: none).
    failing = run_id_for(uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=failing, thread_id=await _thread(host), executor=host.name, metadata={},
                             settings=RunSettings(graph_id="echo", input={"fail": True}, error_attempts=2,
                                                  error_backoff_s=0.02))
    async with host.pool.connection() as conn:
        await conn.execute("UPDATE qr_runs SET attempt = 5, outage_retries = 5 WHERE run_id = %s", (failing,))
    await host.submit(failing)
    status, _ = await asyncio.wait_for(host.wait(failing), timeout=60)
    row = await queue.run_status(host.pool, failing)
    assert status == "error"
    assert (row["outage_retries"], row["error_retries"], row["executor_deaths"], row["attempt"]) == (5, 1, 0, 7)

    # Its executor dying now and then (recover after each death): a death counts only as a death,
    # and the third ends it (run_max_attempts), whatever its other retries.
    assert host.settings.run_max_attempts == 3
    async with host.pool.connection() as conn:
        await conn.execute("UPDATE qr_runs SET status = 'running', executor = 'gone-executor', error = NULL "
                           "WHERE run_id = %s", (failing,))
    for death in (1, 2):
        assert failing in await queue.recover(host.pool, "gone-executor", ["gone-executor"], 3)
        row = await queue.run_status(host.pool, failing)
        assert (row["status"], row["executor_deaths"]) == ("pending", death)
        async with host.pool.connection() as conn:
            await conn.execute("UPDATE qr_runs SET status = 'running' WHERE run_id = %s", (failing,))
    await queue.recover(host.pool, "gone-executor", ["gone-executor"], 3)
    row = await queue.run_status(host.pool, failing)
    assert row["status"] == "error" and "died 3 time(s)" in row["error"]["message"]


@pytest.mark.parametrize("resumable", [False, True])
async def test_a_reader_that_asks_a_restarted_host_for_a_run_its_last_incarnation_ended_gets_the_end(
        host: RunHost, tmp_path, resumable: bool):
    """A CI hang of the fault suite: the run executor recorded a streamed run's end and was killed
    before the end reached the API. The API then asked the restarted executor (same name) for the
    run's events with ``start=True``; the new incarnation made a stream for the run, whose claim
    found it already ended, and the reader waited on that stream for good (heartbeats kept the
    client from timing out). The reader must get the run's end (and, resumable, its stored events)."""
    thread_id = await _thread(host)
    run_id = run_id_for(uuid.uuid4().hex)
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id,
                             settings=RunSettings(graph_id="echo", input={"items": []}, resumable=resumable),
                             metadata={}, executor=host.name)
    assert await host.wait(run_id, start=True) == ("success", orjson.dumps({"items": ["a"]}))
    await eventually(lambda: _finished(host, run_id), timeout=30, what="the run's stream to finish")
    first_event = host.streams[run_id].events[0].seq
    restarted = RunHost(host.name, host.settings, host.database_url)  # the next incarnation
    await restarted.ready()
    try:
        seen = await asyncio.wait_for(_read_all(restarted, run_id, start=True), 10)
        assert seen[-1][1] == "__end__" and orjson.loads(seen[-1][2])["status"] == "success"
        if resumable:  # the stored events, then the end
            assert [event for _, event, _ in seen] == ["values", "values", "__end__"]
            resumed = await asyncio.wait_for(_read_all(restarted, run_id, after=first_event, start=True), 10)
            assert [event for _, event, _ in resumed] == ["values", "__end__"]
        assert run_id not in restarted.streams  # no stream left behind for a run that ended elsewhere
        assert (await queue.run_status(host.pool, run_id))["attempt"] == 1  # not run again
    finally:
        await restarted.close()


async def _read_all(host: RunHost, run_id: str, *, after: int = -1, start: bool = False) -> list:
    return [item async for items in host.events(run_id, after, start=start) for item in items]


async def test_a_handover_that_reaches_the_next_incarnation_of_the_host_that_ran_it_does_not_run_it_again(
        host: RunHost):
    """runs.wait hands its run's row to the host (inserted claimed, no claim); the host ran it to
    its end and died before answering, and the API's fallback repeated the handover to the
    restarted host, which knew nothing of the run and executed it a second time. A handover older
    than the host's incarnation is claimed instead: an ended run is answered from its row."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": []})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run  # as qr_create_run inserts it
    assert await host.wait(run_id, start=True, run=claimed) == ("success", orjson.dumps({"items": ["a"]}))
    restarted = RunHost(host.name, host.settings, host.database_url)
    await restarted.ready()
    try:
        assert await asyncio.wait_for(restarted.wait(run_id, start=True, run=claimed), 10) == ("success", None)
        assert restarted.runs_started == 0
        row = await queue.run_status(host.pool, run_id)
        assert row["attempt"] == 1 and row["status"] == "success"
        values = await _thread_values(host, thread_id)
        assert values == {"items": ["a"]}, values  # applied once
    finally:
        await restarted.close()


async def test_a_handover_newer_than_the_hosts_incarnation_still_starts_its_run_without_a_claim(
        host: RunHost, monkeypatch):
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": []})
    claimed = (await queue.claim(host.pool, run_id, host.name)).run
    assert claimed["started_at"] >= host.incarnation_began
    real_claim = queue.claim
    claims: list[str] = []

    async def counted(pool, rid, executor):
        claims.append(rid)
        return await real_claim(pool, rid, executor)

    monkeypatch.setattr(queue, "claim", counted)
    assert await host.wait(run_id, start=True, run=claimed) == ("success", orjson.dumps({"items": ["a"]}))
    assert claims == []


async def _thread_values(host: RunHost, thread_id: str) -> dict:
    async with host.pool.connection() as conn:
        row = await (await conn.execute('SELECT "values" FROM qr_threads WHERE thread_id = %s', (thread_id,))).fetchone()
    return row["values"]


async def test_a_reader_waiting_on_a_stream_nobody_feeds_gets_the_end_once_the_run_ended_elsewhere(
        host: RunHost, monkeypatch):
    """The safety net behind the fix above: a reader left waiting on a stream of a run that this
    host does not hold (whatever path made it) looks at the run's row after READER_RECHECK_S of
    silence, and gets the end once the row says the run ended."""
    from runs import host as host_module
    from runs.stream import RunStream

    monkeypatch.setattr(host_module, "READER_RECHECK_S", 0.2)
    thread_id = await _thread(host)
    run_id = run_id_for(uuid.uuid4().hex)  # queued for another host: this one's sweep leaves it alone
    assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id, settings=RunSettings(
        graph_id="echo", input={"items": []}), metadata={}, executor=f"elsewhere-{uuid.uuid4().hex[:6]}")
    looked: list[str] = []
    real_run_status = queue.run_status

    async def counted(pool, rid: str):
        row = await real_run_status(pool, rid)
        looked.append(row["status"])
        return row

    monkeypatch.setattr(queue, "run_status", counted)
    host.streams[run_id] = RunStream(run_id)  # made for the run; nothing here will run it
    reading = asyncio.create_task(_read_all(host, run_id))
    async def looked_twice() -> bool:
        return len(looked) >= 2

    await eventually(looked_twice, timeout=10, what="the reader to look at the pending run twice")
    assert not reading.done() and set(looked) == {"pending"}  # a pending run: it keeps waiting
    cancelled, _ = await queue.cancel_pending(host.pool, run_id, "interrupt")  # ended by another host
    assert cancelled
    seen = await asyncio.wait_for(reading, 10)
    assert [event for _, event, _ in seen] == ["__end__"]
    assert orjson.loads(seen[-1][2])["status"] == "interrupted"
    assert run_id not in host.streams


async def test_a_host_never_restarted_starts_the_run_handed_to_it_first_without_counting_a_death(
        database_url: str, tmp_path):
    """An agent's run host is made on its first API run, which the API inserted claimed for it
    before the host existed. Recovery on start took that row for one its earlier incarnation had
    been running (an agent has none: it is never restarted): it counted an executor death against
    the run and ran it as attempt 2. A host made ``restartable=False`` recovers nothing it was
    running, and starts the handed-over row as it is."""
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path, graphs=TEST_GRAPHS)
    name = f"test-agent-{uuid.uuid4().hex[:6]}"
    first = RunHost(f"test-host-{uuid.uuid4().hex[:6]}", settings, database_url)
    await first.ready()
    try:
        thread_id = await _thread(first)
        run_id = run_id_for(uuid.uuid4().hex)
        assert await enqueue_run(first.pool, run_id=run_id, thread_id=thread_id,
                                 settings=RunSettings(graph_id="echo", input={"items": []}), metadata={},
                                 executor=name)
        claimed = (await queue.claim(first.pool, run_id, name)).run  # as qr_create_run inserts it
    finally:
        await first.close()
    agent = RunHost(name, settings, database_url, restartable=False)  # made by the run's handover
    try:
        assert await asyncio.wait_for(agent.wait(run_id, start=True, run=claimed), 30) == (
            "success", orjson.dumps({"items": ["a"]}))
        row = await queue.run_status(agent.pool, run_id)
        assert (row["attempt"], row["executor_deaths"]) == (1, 0)
    finally:
        await agent.close()


async def test_a_handover_whose_insert_began_before_the_host_and_that_recovery_missed_still_starts_at_once(
        host: RunHost):
    """The API's insert can begin (its started_at) before a restarted host's incarnation and commit
    after the host's recovery read the queue: the handover then looks older than the host, and its
    claim finds the row running. It waited for the sweep's lost-handover pass (40 s by default);
    the host now requeues and claims it at once (a new attempt, as the sweep would)."""
    thread_id = await _thread(host)
    run_id = await _queue(host, thread_id, {"items": []})
    await queue.claim(host.pool, run_id, host.name)
    async with host.pool.connection() as conn:  # its transaction began an hour before the host did,
        claimed = await (await conn.execute(    # and the sweep will not take it for a lost one
            "UPDATE qr_runs SET started_at = started_at - interval '1 hour' WHERE run_id = %s RETURNING *",
            (run_id,))).fetchone()
    assert claimed["started_at"] < host.incarnation_began
    async with host.pool.connection() as conn:
        await conn.execute("UPDATE qr_runs SET started_at = now() + interval '1 hour' WHERE run_id = %s", (run_id,))
    status, output = await asyncio.wait_for(host.wait(run_id, start=True, run=claimed), 10)
    assert (status, output) == ("success", orjson.dumps({"items": ["a"]}))
    row = await queue.run_status(host.pool, run_id)
    assert (row["attempt"], row["executor_deaths"], host.runs_started) == (2, 0, 1)


async def test_a_retry_that_could_not_be_recorded_keeps_its_stream_for_the_next_attempt(
        database_url: str, tmp_path, monkeypatch):
    """A run whose graph raised, with retries left, when the database fails the retry's bookkeeping:
    the run is requeued by the sweep (it stays 'running' here), and its stream must go on with the
    next attempt. It was finished without an end: a reader got "missing" for a run still on."""
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path, graphs=TEST_GRAPHS,
                        run_sweep_interval_s=0.2)  # the lost-handover pass after 5 s
    host = RunHost(f"test-host-{uuid.uuid4().hex[:6]}", settings, database_url)
    await host.ready()
    try:
        thread_id = await _thread(host)
        run_id = run_id_for(uuid.uuid4().hex)
        assert await enqueue_run(host.pool, run_id=run_id, thread_id=thread_id, executor=host.name, metadata={},
                                 settings=RunSettings(graph_id="echo", input={"fail": True}, error_attempts=2))
        real_retries_so_far, failed = queue.retries_so_far, []

        async def down_once(pool, rid: str, cause: str) -> int:
            if not failed:
                failed.append(cause)
                raise OSError("the database went away")
            return await real_retries_so_far(pool, rid, cause)

        monkeypatch.setattr(queue, "retries_so_far", down_once)
        await host.submit(run_id)
        status, _ = await asyncio.wait_for(host.wait(run_id), 60)
        row = await queue.run_status(host.pool, run_id)
        assert failed == ["error_retries"]
        assert (status, row["status"]) == ("error", "error"), (status, row)
        assert row["attempt"] >= 2  # the sweep started it again
    finally:
        await host.close()
