"""The run-hosting core: claim queued API runs, execute them, stream their output, cancel, recover.

A ``RunHost`` is plain asyncio (it needs a running loop and Postgres, not a Ray runtime): the
run-executor actors embed one, and so do the actors that execute the runs of the built-in
assistants (the orchestrator actor). Each host has a name, the value of ``qr_runs.executor``
for the runs it holds; the API pushes a run's id to the host named in its row with ``submit``,
and the run starts at once when its thread is free. Output goes into an in-memory log per run
that any API replica reads with the streaming generator ``events``.

Recovery: on start a host puts the runs it was running back in the queue (or marks them
``error`` once they used up their attempts), and a slow sweep picks up anything a lost push
left behind; the sweep is a safety net, never the way runs normally start.

What follows a run's end (its outcome in the queue, a rollback's checkpoints, the webhook) is in
``runs/outcomes.py``; the calls an actor hosting runs answers, in ``actors/run_hosting.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.conninfo import make_conninfo

from quadracode_ray.config import Settings
from quadracode_ray.persistence import open_async_pool
from quadracode_ray.persistence.checkpoints import ApiCheckpointSaver
from quadracode_ray.persistence.store_index import open_store
from runs import metrics as run_metrics
from runs import queue, stored_events
from runs.execution import RunOutcome, execute_run
from runs.graph_registry import GraphRegistry
from runs.outcomes import call_webhook, record_cancel, record_outcome
from runs.stream import END_EVENT, RunStream, batch, dumps

log = logging.getLogger(__name__)

# A finished run's events stay in memory this long (for the request that created it, when it
# subscribes late under load); then only its end (the result runs/wait answers) stays, until
# STREAM_RETENTION_S. Resumable runs' events are in Postgres for longer.
STREAM_EVENTS_RETENTION_S = 15.0
STREAM_RETENTION_S = 120.0
# A run cancelled before its handover came is not started by a handover this late.
REVOKED_RETENTION_S = 3600.0
# A reader in another process (the API replica, through a streaming actor call) gets a run's events
# gathered for at most this long after the first of a batch, or up to the run's end: each batch is
# a message through Ray and then through the replica's HTTP stack, the largest per-run costs of a
# stream (bench/reports/api.md). A short run's stream is one message; a model's tokens arrive
# at most this much later, 50 batches a second.
RELAY_COALESCE_S = 0.02
# A reader that has waited this long without an event checks that the run has not ended
# without this host (runs/host.py _end_stream_of_a_run_that_ended): one query per silent reader.
READER_RECHECK_S = 30.0
# Events of attempt k are numbered from (k - 1) * ATTEMPT_SEQ_SPAN, so Last-Event-ID stays
# monotonic across the attempts of a run (an attempt keeps at most 100_000 events in memory).
ATTEMPT_SEQ_SPAN = 1_000_000
# A run tried again after its graph raised waits error_backoff_s, doubling, at most this long.
MAX_ERROR_BACKOFF_S = 30.0
# A run whose graph met a database outage (runs/execution.py database_outage) is started again
# from its last checkpoint up to this many times, waiting 1 s, doubling up to MAX_ERROR_BACKOFF_S
# (about two minutes in all), counted apart from its error_attempts and its executor's deaths
# (migration api/0006): a Postgres restart is no error of the run.
OUTAGE_ATTEMPTS = 8
OUTAGE_BACKOFF_S = 1.0

Clients = Callable[[str], dict[str, Any]]
"""graph_id -> the clients its graph takes from ``config["configurable"]``."""
Forward = Callable[[str, str], bool]
"""(host name, run_id) -> True once pushed to that host; False when the host is gone (through
Ray in the actors: ``actors.run_hosting.RayForward``)."""


def _record_run_metrics(graph_id: str, status: str, seconds: float) -> None:
    try:
        run_metrics.api_runs().inc(tags={"graph": graph_id, "status": status})
        run_metrics.api_run_seconds().observe(seconds, tags={"graph": graph_id})
    except Exception:  # a metrics backend must never fail a run's bookkeeping
        log.debug("run metrics not recorded", exc_info=True)


class RunHost:
    """Hosts API runs under ``name``.

    ``pool_names``/``adopt_orphans``: the run-executor pool this host belongs to, and whether it
    adopts runs left to executors no longer in the pool (the pool's first executor does).
    ``clients``: the fabric's clients per graph. ``forward``: how a run queued behind one that
    ended here reaches the host named in its row. ``min_connections``: the database pool's floor
    (an agent, which rarely hosts runs, keeps few idle connections). ``restartable=False``: the
    host is never restarted (an agent; its runs are adopted by the orchestrator's host once it is
    gone), so starting up puts no running run back in the queue (those recorded for it are
    handovers on their way) and a handed-over row is trusted.
    """

    def __init__(self, name: str, settings: Settings, database_url: str, *, pool_names: list[str] | None = None,
                 adopt_orphans: bool = False, clients: Clients | None = None, forward: Forward | None = None,
                 min_connections: int = 4, restartable: bool = True):
        self.name = name
        self.restartable = restartable
        self.min_connections = min_connections
        self.settings = settings
        self.database_url = database_url
        self.pool_names = pool_names or [name]
        self.adopt_orphans = adopt_orphans
        self.clients = clients or (lambda graph_id: {})
        self.forward = forward
        self.streams: dict[str, RunStream] = {}
        self.tasks: dict[str, asyncio.Task] = {}  # per running run: executes it and records its end
        self.work: dict[str, asyncio.Task] = {}  # per running run: the graph's execution (what cancel stops)
        self.cancel_actions: dict[str, str] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.starting: dict[str, asyncio.Event] = {}  # runs being claimed (or handed over) right now
        self.revoked: set[str] = set()  # runs inserted claimed for this host, cancelled before their handover
        self.awaiting_slot: set[str] = set()  # of those, unclaimed ones still waiting for a slot
        self.start_again: set[str] = set()
        self.slots = asyncio.Semaphore(settings.run_executor_concurrency)
        self.runs_started = 0
        self._background: set[asyncio.Task] = set()  # strong refs: asyncio keeps only weak ones
        self._ready: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        self.incarnation_began: datetime | None = None  # the database's clock, before recovery (restartable)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        """Begin starting up (pools, graphs, recovery) in the background; ``ready`` awaits it.
        A start that failed (Postgres not up yet) is tried again by the next call."""
        failed = self._ready is not None and self._ready.done() and (
            self._ready.cancelled() or self._ready.exception() is not None)
        if self._ready is None or failed:
            self._ready = asyncio.get_running_loop().create_task(self._start_up())
        return self._ready

    async def ready(self) -> str:
        await self.start()
        return self.name

    async def _start_up(self) -> None:
        self.pool = await open_async_pool(self.database_url, min_size=self.min_connections,
                                          max_size=max(4, self.settings.db_pool_max_size), name=self.name)
        # Checkpoints are written without waiting for the WAL flush: the run queue is the source
        # of truth, and the synchronous commit that records a run's end flushes every checkpoint
        # written before it. An OS crash mid-run loses at most the last checkpoints of a run
        # that is still 'running', which recovery retries from the last durable one.
        self.checkpoint_pool = await open_async_pool(
            make_conninfo(self.database_url, options="-c synchronous_commit=off"),
            min_size=max(1, self.min_connections // 2),
            max_size=max(4, self.settings.db_pool_max_size), name=f"{self.name}-checkpoints")
        self.saver = ApiCheckpointSaver(self.checkpoint_pool)
        self.store = await open_store(self.pool, self.settings)  # with the semantic index, if configured
        self.registry = GraphRegistry.from_settings(self.settings)
        if self.restartable:  # (a host never restarted has no earlier incarnation to tell apart)
            self.incarnation_began = await queue.database_now(self.pool)
            due = await queue.recover(self.pool, self.name, self.pool_names, self.settings.run_max_attempts,
                                      adopt_orphans=self.adopt_orphans)
        else:
            due = await queue.recover_pending(self.pool, self.name, self.pool_names, adopt_orphans=self.adopt_orphans)
        for run_id in due:
            self._submit_local(run_id)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        """Stop the sweep and close the pools (plain tests; an actor simply dies)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._ready is not None and self._ready.done() and not self._ready.exception():
            await self.pool.close()
            await self.checkpoint_pool.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.run_sweep_interval_s)
            try:
                for run_id in await queue.recover_pending(self.pool, self.name, self.pool_names,
                                                          adopt_orphans=self.adopt_orphans):
                    if run_id not in self.tasks and run_id not in self.timers:
                        self._submit_local(run_id)
                await self._requeue_lost_handovers()
            except Exception:  # the sweep is a safety net; it must never die
                log.exception("run queue sweep failed")

    # --- starting runs -----------------------------------------------------------------------------
    async def submit(self, run_id: str, run: dict | None = None) -> None:
        """Start a run queued for this host; ``run``: its row, when the API inserted it claimed
        and nobody reads its output (its client left before the call that would start it)."""
        await self.start()
        self._start(run_id, run)

    def _start(self, run_id: str, run: dict | None) -> None:
        """Start a run just queued for this host: from its row when the API inserted it claimed
        (no claim round trip), else by claiming it. A claimed row this host already knows (it
        recovered the run after a restart) is not started twice, and neither is one handed over
        before this incarnation began: an earlier one may have run it to its end (it died before
        answering, and the API repeated the handover here), so it is claimed instead. That starts
        it if recovery put it back in the queue, or as a new attempt if recovery could not have
        seen it (``_a_lost_handover``); an ended run is answered from its row."""
        if run_id in self.revoked:  # cancelled before it got here: its row says so to the reader
            return
        if run is None or run.get("status") != "running" or self._older_than_this_incarnation(run):
            self._submit_local(run_id)
        elif run_id not in self.streams and run_id not in self.tasks and run_id not in self.starting:
            stream = self.streams[run_id] = RunStream(run_id)
            # Marked at once, not when the task first runs: a cancel arriving before that waits
            # for the run's task instead of taking the run for one never handed over.
            self.starting[run_id] = started = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._start_claimed(run, stream, started))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _older_than_this_incarnation(self, run: dict) -> bool:
        if not self.restartable:  # no earlier incarnation to have run it
            return False
        started_at = run.get("started_at")
        return started_at is None or self.incarnation_began is None or started_at < self.incarnation_began

    async def _start_claimed(self, run: dict, stream: RunStream, started: asyncio.Event) -> None:
        run_id = str(run["run_id"])
        try:
            await self.slots.acquire()
            self.runs_started += 1
            self.tasks[run_id] = asyncio.get_running_loop().create_task(self._execute(run, stream))
        finally:
            del self.starting[run_id]
            started.set()

    async def _requeue_lost_handovers(self) -> None:
        """Runs the API inserted claimed for this host but never handed over (the request died
        between the insert and the call): back to the queue, then started as any pending run."""
        grace_s = max(5.0, 3 * self.settings.run_sweep_interval_s)
        for run_id in await queue.stale_running(self.pool, self.name, grace_s):
            if run_id not in self.tasks and run_id not in self.starting:  # (a reader may have made its stream)
                await queue.release_for_retry(self.pool, run_id)
                self._submit_local(run_id)

    def _submit_local(self, run_id: str) -> None:
        self.streams.setdefault(run_id, RunStream(run_id))
        task = asyncio.get_running_loop().create_task(self._try_start(run_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _try_start(self, run_id: str) -> None:
        if run_id in self.tasks or run_id in self.revoked:  # (a cancel of it is asking the queue)
            return
        if run_id in self.starting:
            # A claim is in flight and may fail on state that has changed since: try again after it.
            self.start_again.add(run_id)
            return
        self.starting[run_id] = started = asyncio.Event()
        try:
            await self._claim_and_start(run_id)
        finally:
            del self.starting[run_id]
            started.set()
            if run_id in self.start_again:
                self.start_again.discard(run_id)
                if run_id not in self.tasks:
                    self._submit_local(run_id)

    async def _claim_and_start(self, run_id: str) -> None:
        self.awaiting_slot.add(run_id)
        try:
            await self.slots.acquire()
        finally:
            self.awaiting_slot.discard(run_id)
        try:
            claimed = await queue.claim(self.pool, run_id, self.name)
        except Exception:
            self.slots.release()
            log.exception("claiming run %s failed", run_id)
            return
        run = claimed.run
        if run is None and claimed.not_before is None:
            try:
                row = await queue.run_status(self.pool, run_id)
                if self._a_lost_handover(run_id, row):
                    # Back to the queue and claimed as the sweep's lost-handover pass would, but now:
                    # a new attempt, which continues from any checkpoint the row's run wrote.
                    await queue.release_for_retry(self.pool, run_id)
                    run = (await queue.claim(self.pool, run_id, self.name)).run
            except Exception:
                self.slots.release()
                log.exception("run %s: reading or requeuing it after its claim failed", run_id)
                return
            if run is None:
                self.slots.release()
                await self._end_stream_of_a_run_that_ended(run_id, claiming=True, row=row)
                return
        elif run is None:
            self.slots.release()
            delay = max((claimed.not_before - datetime.now(UTC)).total_seconds(), 0.0)
            self.timers[run_id] = asyncio.get_running_loop().call_later(delay, self._timer_fired, run_id)
            return
        stream = self.streams.get(run_id)
        if stream is None or stream.finished:
            stream = self.streams[run_id] = RunStream(run_id)
        if not stream.events:  # numbered after the attempts before it (see ATTEMPT_SEQ_SPAN)
            stream.dropped = (max(run.get("attempt") or 1, 1) - 1) * ATTEMPT_SEQ_SPAN
        self.runs_started += 1
        self.tasks[run_id] = asyncio.get_running_loop().create_task(self._execute(run, stream))

    def _a_lost_handover(self, run_id: str, row: dict | None) -> bool:
        """A row the claim could not take because it is recorded as running here, as the API
        inserts a run it hands over, while this host holds no task for it (we are in its claim, so
        no handover is starting it either): a handover that never came, one older than this
        incarnation whose insert recovery could not see (it committed after recovery read the
        queue), or a run whose end this host failed to record. Nobody runs it: it is requeued and
        claimed at once, as the sweep would after its grace."""
        return (row is not None and row["status"] == "running" and row["executor"] == self.name
                and run_id not in self.tasks)

    async def _end_stream_of_a_run_that_ended(self, run_id: str, *, claiming: bool = False,
                                              row: dict | None | object = ...) -> None:
        """Finish the stream of a run this host does not hold whose row says it ended (or is
        gone), as ``ended_elsewhere``: its readers then get the stored events and the end from the
        row (``events``). Such a stream would otherwise never end. The case seen: a host recorded
        a run's end and died before a reader got it; the reader asked the host's next incarnation
        with ``start``, which made a stream for the run and found it ended when claiming it
        (``claiming``: the claim that found it so is this host's own start). A reader that waits
        READER_RECHECK_S without news checks the same, in case another path leaves one."""
        stream = self.streams.get(run_id)
        if stream is None or stream.finished or self._holds(run_id, claiming=claiming):
            return
        if row is ...:  # (the claim path has read it already)
            row = await queue.run_status(self.pool, run_id)
        if row is not None and row["status"] not in queue.TERMINAL_STATUSES:
            return  # waiting behind a run of its thread, due later, or running (its handover on the way)
        if self.streams.get(run_id) is stream and not stream.finished and not self._holds(run_id, claiming=claiming):
            del self.streams[run_id]
            stream.ended_elsewhere = True
            await stream.finish()

    def _holds(self, run_id: str, *, claiming: bool = False) -> bool:
        """Whether this host runs the run, starts it, or will start it (a retry's timer)."""
        return run_id in self.tasks or run_id in self.timers or (not claiming and run_id in self.starting)

    def _timer_fired(self, run_id: str) -> None:
        self.timers.pop(run_id, None)
        self._submit_local(run_id)

    async def _execute(self, run: dict, stream: RunStream) -> None:
        run_id = str(run["run_id"])
        kwargs = run["kwargs"]
        status = "error"
        started = time.monotonic()
        ended: float | None = None
        retrying = False
        try:
            # The graph runs in a task of its own, the one ``cancel`` cancels: this task, which
            # records the outcome, is never cancelled, even when the cancel comes before it began
            # (cancelling a task that has not started skips its body, bookkeeping included).
            work = asyncio.get_running_loop().create_task(execute_run(
                run, self.registry, stream, checkpointer=self.saver, store=self.store,
                clients=self.clients(kwargs["graph_id"])))
            self.work[run_id] = work
            if run_id in self.cancel_actions:
                work.cancel()
            flusher = None
            if kwargs.get("resumable"):
                flusher = asyncio.get_running_loop().create_task(stored_events.flush(self.pool, run_id, stream))
                self._background.add(flusher)
                flusher.add_done_callback(self._background.discard)
            try:
                outcome = await work
                ended = time.monotonic()
                status = outcome.status
                # Until the retry is decided: a raise on the way (the database still down) leaves
                # the run to the sweep, which requeues it, so its stream goes on with that attempt.
                retrying = outcome.status == "error"
                if retrying and await self._retried_after_error(run, outcome):
                    return
                retrying = False
                if outcome.database_outage:  # out of attempts: the error its stream has not had
                    await stream.publish("error", dumps(outcome.error))
                next_run = await record_outcome(self.pool, self.saver, run, outcome)
                await stream.publish(END_EVENT, dumps({"status": status, "output": outcome.output}))
            except asyncio.CancelledError:
                ended = time.monotonic()
                action = self.cancel_actions.pop(run_id, "interrupt")
                status = "interrupted"
                next_run = await record_cancel(self.pool, self.saver, self.registry, run, action)
                await stream.publish(END_EVENT, dumps({"status": "interrupted", "output": None}))
            await stream.finish()
            if flusher is not None:
                await flusher  # the rest of the events, the end included
            if next_run is not None:
                await self._push(next_run)
            if kwargs.get("webhook"):
                await call_webhook(self.pool, run, status)
        except Exception:
            log.exception("run %s: bookkeeping failed", run_id)
            if not retrying:  # a retry that could not be recorded is requeued by the sweep: its stream goes on
                await stream.finish()
        finally:
            # The run's own time: up to its outcome, not the bookkeeping and webhook after it.
            seconds = (ended if ended is not None else time.monotonic()) - started
            if not retrying:
                _record_run_metrics(kwargs.get("graph_id", ""), status, seconds)
            self.tasks.pop(run_id, None)
            self.work.pop(run_id, None)
            self.cancel_actions.pop(run_id, None)
            self.slots.release()
            if not retrying:  # a retried run's stream goes on with its next attempt
                loop = asyncio.get_running_loop()
                loop.call_later(STREAM_EVENTS_RETENTION_S, stream.keep_only_end)
                loop.call_later(STREAM_RETENTION_S, self._forget, run_id, stream)

    async def _retried_after_error(self, run: dict, outcome: RunOutcome) -> bool:
        """The graph raised: True when the run has retries left for that cause and went back to
        the queue, due after the backoff, to start again here then (from its last checkpoint, see
        ``execute_run``). A database outage and an error of the graph each have a budget of their
        own, and neither is the executor deaths' (``queue.recover``).
        (With the database still down this raises; the sweep then requeues the run once it is back.)"""
        run_id = str(run["run_id"])
        cause = "outage_retries" if outcome.database_outage else "error_retries"
        allowed = OUTAGE_ATTEMPTS if outcome.database_outage else run["kwargs"].get("error_attempts", 1) - 1
        retried = await queue.retries_so_far(self.pool, run_id, cause)
        if retried >= allowed:
            return False
        backoff = OUTAGE_BACKOFF_S if outcome.database_outage else run["kwargs"].get("error_backoff_s", 0.0)
        delay = min(backoff * 2 ** retried, MAX_ERROR_BACKOFF_S)
        log.warning("run %s: attempt %s failed%s; retry %d of %d in %.2f s", run_id, run.get("attempt"),
                    " (the database did not answer)" if outcome.database_outage else "", retried + 1, allowed, delay)
        await queue.retry_later(self.pool, run_id, delay, cause)
        self.timers[run_id] = asyncio.get_running_loop().call_later(delay, self._timer_fired, run_id)
        return True

    def _forget(self, run_id: str, stream: RunStream) -> None:
        if self.streams.get(run_id) is stream:
            del self.streams[run_id]

    async def _push(self, next_run: queue.NextRun) -> None:
        target = next_run.executor or self.name
        if target == self.name or self.forward is None or not self.forward(target, next_run.run_id):
            self._submit_local(next_run.run_id)  # ours, or that host is gone: run it here

    async def wait_idle(self) -> None:
        """Return when this host runs nothing and has nothing about to start (tests, shutdowns)."""
        await self.start()
        while self.tasks or self.starting or self.timers:
            if self.tasks:
                await asyncio.wait(list(self.tasks.values()))
            else:  # a claim in flight, or a run due later: look again shortly
                await asyncio.sleep(0.05)

    # --- cancelling ----------------------------------------------------------------------------------
    async def cancel(self, run_id: str, action: str = "interrupt", *, retry_started: bool = True) -> bool:
        """Stop a run this host holds. Returns False when it is neither running nor pending."""
        await self.start()
        starting = self.starting.get(run_id)
        # A claim in flight decides whether there is a task to stop; a start still waiting for a
        # slot has claimed nothing (the queue cancels the run), so a cancel never waits for a slot.
        if starting is not None and run_id not in self.awaiting_slot:
            await starting.wait()
        task = self.tasks.get(run_id)
        if task is not None:
            self.cancel_actions[run_id] = action
            work = self.work.get(run_id)
            if work is not None:  # else the run has not begun and cancels itself when it does
                work.cancel()
            await asyncio.shield(task)  # returns once the run's end is recorded
            return True
        timer = self.timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        # A run inserted claimed for this host that it neither runs nor is starting is one whose
        # handover has not come (its client left between the insert and the call that starts it):
        # cancelled in its row, and revoked first, so that call, should it come meanwhile or
        # later, starts nothing. (A start in flight may claim the run meanwhile: then only a
        # pending row is the queue's to cancel.)
        unheld = run_id not in self.starting and run_id not in self.tasks
        revoking = unheld and run_id not in self.revoked  # (not a second cancel's to undo)
        if revoking:
            self.revoked.add(run_id)
        cancelled = False
        try:
            cancelled, next_run = await queue.cancel_pending(self.pool, run_id, action,
                                                             claimed_by=self.name if unheld else None)
        finally:
            if revoking and cancelled:
                asyncio.get_running_loop().call_later(REVOKED_RETENTION_S, self.revoked.discard, run_id)
            elif revoking:
                self.revoked.discard(run_id)
        if not cancelled and retry_started and (run_id in self.starting or run_id in self.tasks):
            # A start that waited for a slot got one and claimed the run while the queue was
            # asked (the soak lost 23 of 985 cancels so): stop the task it started instead.
            return await self.cancel(run_id, action, retry_started=False)
        stream = self.streams.get(run_id)
        if cancelled and unheld and stream is None:
            # A reader that read the row as running before the cancel committed waits on a stream
            # it then makes: it finds the end here.
            stream = self.streams[run_id] = RunStream(run_id)
            asyncio.get_running_loop().call_later(STREAM_RETENTION_S, self._forget, run_id, stream)
        if cancelled and stream is not None and not stream.finished:
            await stream.publish(END_EVENT, dumps({"status": "interrupted", "output": None}))
            await stream.finish()
        if next_run is not None:
            await self._push(next_run)
        return cancelled

    # --- output ------------------------------------------------------------------------------------
    async def wait(self, run_id: str, *, start: bool = False,
                   run: dict | None = None) -> tuple[str, bytes | None]:
        """Wait for the run's end: (status, its output as JSON bytes, or None when it has none).

        ``start``: the run was just queued for this host, start it (no separate ``submit``);
        ``run``: its row, when the API inserted it claimed (see ``_start``)."""
        end: tuple[int, str, bytes] | None = None
        async for items in self.events(run_id, -1, start=start, run=run):
            end = items[-1]
        if end is None or end[1] != END_EVENT:
            return "missing", None
        payload = orjson.loads(end[2])
        output = payload.get("output")
        return payload.get("status") or "missing", None if output is None else dumps(output)

    async def events(self, run_id: str, after: int = -1, *, start: bool = False, run: dict | None = None,
                     coalesce_s: float = 0.0):
        """Async generator: batches of (seq, event, data) with seq > after, until the run ends.

        ``after=-2`` means "from now on" (a join without Last-Event-ID). ``start``: as in ``wait``.
        ``coalesce_s``: a batch waits this long after its first event for more, unless the run
        ends first (a reader in another process: fewer, larger messages).
        Events older than this host keeps in memory (an earlier attempt's, or trimmed after the
        run ended) come from qr_run_events, where resumable runs store them.
        """
        await self.start()
        if start:
            self._start(run_id, run)
        stream = self.streams.get(run_id)
        if stream is None:
            row = await queue.run_status(self.pool, run_id)
            # A push may have started (and even ended) the run here while the row was read: its
            # events are then in memory, and the row's end status does not mean "held elsewhere".
            stream = self.streams.get(run_id)
        if stream is None:
            if row is not None and row["status"] in ("pending", "running"):
                stream = self.streams.setdefault(run_id, RunStream(run_id))
                if row["executor"] in (None, self.name) and run_id not in self.tasks:
                    self._submit_local(run_id)
            else:
                yield await stored_events.replay(self.pool, run_id, row, after)
                return
        if after == -2:
            after = stream.next_seq - 1
        while True:
            if after + 1 < stream.dropped:  # behind what memory holds: the rest is stored, or lost
                stored = await stored_events.read(self.pool, run_id, after, before=stream.dropped)
                after = stream.dropped - 1
                if stored:
                    yield stored
            items = stream.since(after)
            if items and coalesce_s > 0:
                items = await stream.gather(after, items, coalesce_s)
            if items:
                after = items[-1].seq
                yield batch(items)
                if items[-1].event == END_EVENT:
                    return
            elif stream.finished:
                if stream.ended_elsewhere:  # see _end_stream_of_a_run_that_ended
                    yield await stored_events.replay(self.pool, run_id, await queue.run_status(self.pool, run_id),
                                                     after)
                return
            else:
                await stream.wait_beyond(after, timeout=READER_RECHECK_S)
                if not stream.finished and stream.next_seq <= after + 1:  # silence: is the run still on?
                    await self._end_stream_of_a_run_that_ended(run_id)

    async def stats(self) -> dict[str, Any]:
        await self.start()
        return {"name": self.name, "running": len(self.tasks), "streams": len(self.streams),
                "timers": len(self.timers), "runs_started": self.runs_started}
