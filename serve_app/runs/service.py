"""Creating, following and cancelling runs: the one entry point every caller uses.

Routes, crons and MCP all create runs through :func:`create_run`; a run is inserted into
the durable queue in the same transaction that checks its thread, then pushed to its
executor, which starts it at once when the thread is free. Nothing executes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import ray
from psycopg.errors import RaiseException
from psycopg.types.json import Jsonb
from ray.exceptions import RayActorError

from runs.graph_registry import default_assistant_id
from runs.settings import RunSettings
from runs.stream import END_EVENT, dumps
from runs.v3_events import V3_MARKER
from serve_app.context import AppContext
from serve_app.errors import BadRequest, Conflict, Invalid, NotFound, Unavailable
from serve_app.records import runs as run_records
from serve_app.records.assistants import get as get_assistant
from serve_app.schemas import RunCreate

Batch = list[tuple[int, str, bytes]]
_detached: set[asyncio.Task] = set()  # strong refs: asyncio keeps only weak ones
THREAD_BUSY = "Thread is already running a task. Wait for it to finish or choose a different multitask strategy."


def detached(coroutine) -> asyncio.Task:
    """Run ``coroutine`` outside the current request: Ray Serve cancels everything a request
    started when its client disconnects, and a submit or a cancel must outlive that."""
    task = asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    return task


async def _submit(context: AppContext, executor: str, run_id: str, run: dict | None = None) -> None:
    try:
        await context.executors.handle(executor).submit_run.remote(run_id, run)
    except RayActorError:
        # The executor died for good: a new one takes its name and recovers its queued runs.
        context.executors.forget(executor)
        await context.executors.handle(executor).submit_run.remote(run_id, run)


async def create_run_for_reply(context: AppContext, payload: RunCreate, *, thread_id: str | None,
                               owner: str | None = None) -> dict:
    """``create_run(push=False)`` for a request that answers with the run's output (wait, stream).
    Its client may leave while the run is created: the creation still ends, and the run, whose
    start never went out, is then cancelled (``on_disconnect="cancel"``) or handed to its host
    to run without a reader; not left claimed and unstarted until the host's sweep finds it."""
    creating = detached(create_run(context, payload, thread_id=thread_id, owner=owner, push=False))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        detached(_abandoned(context, creating, cancel=payload.on_disconnect == "cancel"))
        raise


async def _abandoned(context: AppContext, creating: asyncio.Task, *, cancel: bool) -> None:
    try:
        run = await creating
    except Exception:  # nothing was created; the reason has nobody left to go to
        return
    if cancel:
        await cancel_run(context, str(run["run_id"]), run["executor"])
    else:
        await _submit(context, run["executor"], str(run["run_id"]), _handover(run))


def resolve_assistant_id(context: AppContext, value: str) -> str:
    """A UUID, or a registered graph's name (its default assistant), as the official server."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if value in context.graphs.entries:
        return default_assistant_id(value)
    raise Invalid(
        f"Invalid assistant: '{value}'. Must be either:\n- A valid assistant UUID, or\n"
        f"- One of the registered graphs: {', '.join(context.graphs.ids())}"
    )


def _merge_config(assistant: dict, payload: RunCreate) -> tuple[dict, dict]:
    config = {**(assistant["config"] or {}), **(payload.config or {})}
    configurable = {**((assistant["config"] or {}).get("configurable") or {}),
                    **((payload.config or {}).get("configurable") or {})}
    if (payload.config or {}).get("configurable") and payload.context:
        raise BadRequest("Cannot specify both configurable and context. Prefer setting context alone.")
    context = {**(assistant["context"] or {}), **(payload.context or {})}
    if payload.checkpoint_id:
        configurable["checkpoint_id"] = payload.checkpoint_id
    if payload.checkpoint is not None:
        configurable.update(payload.checkpoint.model_dump(exclude_none=True))
    config["configurable"] = configurable
    return config, context


async def create_run(context: AppContext, payload: RunCreate, *, thread_id: str | None,
                     owner: str | None = None, metadata: dict | None = None, push: bool = True,
                     protocol_v3: bool = False) -> dict:
    """Queue a run and push it to its executor; returns the run row (see ``run_records.public``).

    ``thread_id=None`` makes a stateless run on a temporary thread (kept when
    ``payload.on_completion == "keep"``). Raises NotFound/Conflict/Invalid as the routes answer.
    ``metadata`` is merged into the run's metadata (crons use it to tag their runs).
    ``protocol_v3``: the run streams LangGraph's protocol events (serve_app/runs/v3_commands.py).
    ``push=False``: the caller starts the run itself in the call that follows its output
    (``final_output``/``run_events`` with ``start=True``), which saves an actor call; a run that
    can start at once is then inserted already claimed (``status == "running"``) and that call
    hands the row over, which saves the claim. A lost handover is recovered by the host's sweep.
    """
    pool = await context.ready()
    assistant_id = resolve_assistant_id(context, payload.assistant_id)
    stateless = thread_id is None
    if stateless and payload.command is not None and payload.command.resume is not None:
        raise BadRequest("You must provide a thread_id when resuming.")
    try:
        assistant = await get_assistant(pool, assistant_id, owner)
    except NotFound:
        raise NotFound("Thread or assistant not found.") from None
    graph_id = assistant["graph_id"]
    entry = context.graphs.get(graph_id)
    if entry is None:
        raise Invalid(f"Assistant {assistant_id} uses graph '{graph_id}', which is not registered here")
    if not entry.available:
        raise Unavailable(f"Graph '{graph_id}' cannot be loaded: {entry.error}")
    config, run_context = _merge_config(assistant, payload)
    strategy = payload.multitask_strategy or ("reject" if stateless else "enqueue")
    run_id = str(uuid.uuid4())
    temporary = stateless and (payload.on_completion or "delete") == "delete"
    thread_id = thread_id or str(uuid.uuid4())
    # As the official server, the run's configurable names it (the run executor sets the same)
    # and its user ("" when anonymous, as the official dev server without auth).
    # A run's context is mirrored into its configurable too (graphs reading either find it).
    config["configurable"].update(payload.context or {})
    config["configurable"].update(run_id=run_id, thread_id=thread_id, graph_id=graph_id, assistant_id=assistant_id)
    config["configurable"].setdefault("user_id", owner or "")
    if protocol_v3:
        # A v3 (thread streaming) run: marked with its own id, so a later run of the thread that
        # inherits the thread's config (the marker with it) is not taken for one.
        config["configurable"][V3_MARKER] = run_id
    kwargs = RunSettings(
        graph_id=graph_id, input=payload.input,
        command=payload.command.model_dump(exclude_unset=True) if payload.command else None,
        config=config, context=run_context, stream_mode=payload.stream_modes(),
        interrupt_before=payload.interrupt_before, interrupt_after=payload.interrupt_after,
        webhook=payload.webhook, feedback_keys=payload.feedback_keys, temporary=temporary,
        subgraphs=payload.stream_subgraphs, resumable=payload.stream_resumable,
        checkpoint_during=payload.checkpoint_during if payload.checkpoint_during is not None else True,
        # As the official server: "async" unless the run asks (checkpoint_during=False is "exit").
        # LangGraph awaits the pending checkpoint writes before the run ends either way.
        durability=payload.durability or ("exit" if payload.checkpoint_during is False else "async"),
    ).row()
    if graph_id == "agent" and not stateless:
        # Choosing an agent run's host may spawn an agent: first make sure the thread takes the run.
        await _check_thread_takes_run(pool, thread_id, owner, strategy, create=payload.if_not_exists == "create")
    executor = await context.executors.choose_host({"thread_id": thread_id, "graph_id": graph_id})
    # As the official server: a run's metadata is its assistant's under its thread's (both merged in
    # SQL) under its config's and its own; kwargs.config.metadata is the same map.
    run_metadata = {**((payload.config or {}).get("metadata") or {}), **(payload.metadata or {}),
                    **(metadata or {}), "graph_id": graph_id, "assistant_id": assistant_id}
    # One round trip: qr_create_run (migrations api/0002-0004) locks the thread, applies the
    # multitask strategy, merges the thread's and assistant's config and metadata into the run's
    # and the run's config into the thread's (as the official server), and inserts the run.
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT * FROM qr_create_run(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, thread_id, assistant_id, graph_id, Jsonb(run_metadata), Jsonb(kwargs), strategy, executor,
                 owner, float(payload.after_seconds or 0), stateless, temporary,
                 payload.if_not_exists == "create", not push))).fetchone()
    except RaiseException as exc:
        if "qr:busy" in str(exc):
            raise Conflict(THREAD_BUSY) from None
        if "qr:not_found" in str(exc):
            raise NotFound("Thread or assistant not found.") from None
        raise
    inflight = row.pop("inflight")
    if push or (inflight and strategy in ("interrupt", "rollback")):
        detached(_submit(context, executor, run_id))  # (a second start by the caller is a no-op)
    if inflight and strategy in ("interrupt", "rollback"):
        await asyncio.gather(*(cancel_run(context, str(r["run_id"]), r["executor"], strategy) for r in inflight))
    return row


async def _check_thread_takes_run(pool, thread_id: str, owner: str | None, strategy: str, *, create: bool) -> None:
    """What qr_create_run refuses, checked before a host is chosen (it stays the authority):
    a thread that does not exist (unless created) or is not the owner's, a busy one under reject."""
    async with pool.connection() as conn:
        thread = await (await conn.execute(
            "SELECT t.owner, EXISTS (SELECT 1 FROM qr_runs r WHERE r.thread_id = t.thread_id "
            "AND r.status IN ('pending', 'running')) AS busy FROM qr_threads t WHERE t.thread_id = %s",
            (thread_id,))).fetchone()
    if thread is None or (owner is not None and thread["owner"] != owner):
        if not create:
            raise NotFound("Thread or assistant not found.")
    elif thread["busy"] and strategy == "reject":
        raise Conflict(THREAD_BUSY)


async def cancel_run(context: AppContext, run_id: str, executor: str | None, action: str = "interrupt") -> bool:
    """Cancel a pending or running run (``rollback`` also deletes it and its checkpoints)."""
    await context.ready()
    name = executor or context.executors.names[0]
    try:
        return await context.executors.handle(name).cancel_run.remote(run_id, action)
    except RayActorError:
        context.executors.forget(name)
        return await context.executors.handle(name).cancel_run.remote(run_id, action)


def _handover(run: dict) -> dict | None:
    """The row a host starts a run from without claiming it, when create_run inserted it claimed."""
    return run if run.get("status") == "running" and run.get("attempt") == 1 else None


async def _current_host(context: AppContext, run_id: str, name: str) -> str:
    """The host named in the run's row now: a run can move (an agent's runs go to the
    orchestrator when the agent is gone); ``name`` when the row is gone."""
    pool = await context.ready()
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT executor FROM qr_runs WHERE run_id = %s", (run_id,))).fetchone()
    return (row or {}).get("executor") or name


async def run_events(context: AppContext, run: dict, after: int = -1, *, start: bool = False) -> AsyncIterator[Batch]:
    """The run's events from its executor, as they come; survives an executor restart.

    ``start``: the run was created with ``push=False``; the first call starts it."""
    run_id = str(run["run_id"])
    name = run["executor"] or context.executors.names[0]
    resumable = bool((run.get("kwargs") or {}).get("resumable"))
    for attempt in range(10):
        generator = None
        ended = False
        try:
            generator = context.executors.handle(name).run_events.options(num_returns="streaming").remote(
                run_id, after, start, _handover(run) if start else None)
            async for ref in generator:
                items = await ref
                if items:
                    after = items[-1][0]
                    ended = items[-1][1] == END_EVENT
                yield items
                if ended:
                    return
            ended = True
            return
        except (RayActorError, ValueError):
            # The executor died (Ray restarts it and it re-queues the run) or the run moved: follow
            # the new attempt, from where the reader is when its events are stored (resumable).
            context.executors.forget(name)
            name = await _current_host(context, run_id, name)
            after = after if resumable else -1
            start = True  # the new incarnation may not know the run yet: a claim is harmless
            run = {**run, "status": None}  # and no handover: recovery re-queued the run
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        finally:
            if generator is not None and not ended:
                # The reader left early: stop the executor-side generator instead of letting it
                # fill the object store until the run ends.
                with contextlib.suppress(Exception):
                    ray.cancel(generator)
    raise Unavailable(f"run executor {name} keeps failing; run {run_id} stays queued")


async def final_output(context: AppContext, run: dict, *, join: bool = False, start: bool = False) -> Any:
    """``final_output_json``, parsed."""
    return orjson.loads(await final_output_json(context, run, join=join, start=start))


async def final_output_json(context: AppContext, run: dict, *, join: bool = False, start: bool = False) -> bytes:
    """Wait for the run to end; JSON of the values it produced, ``{"__error__": ...}``, or its
    interrupts. One actor call answers it (the host returns the output); a join, or a host that
    died meanwhile, follows the run's events instead (they survive restarts)."""
    run_id = str(run["run_id"])
    if not join:
        name = run["executor"] or context.executors.names[0]
        try:
            _, output = await context.executors.handle(name).wait_run.remote(
                run_id, start, _handover(run) if start else None)
            return output if output is not None else dumps(await thread_output(context, str(run["thread_id"])))
        except (RayActorError, ValueError):
            context.executors.forget(name)
    output: bytes | None = None
    async for items in run_events(context, run, after=-2 if join else -1, start=start):
        for _, event, data in items:
            if event == END_EVENT:
                payload = orjson.loads(data).get("output")
                output = None if payload is None else dumps(payload)
    return output if output is not None else dumps(await thread_output(context, str(run["thread_id"])))


async def thread_output(context: AppContext, thread_id: str) -> Any:
    pool = await context.ready()
    async with pool.connection() as conn:
        row = await (await conn.execute(
            'SELECT status, "values", interrupts, error FROM qr_threads WHERE thread_id = %s',
            (thread_id,))).fetchone()
    if row is None:
        return {}
    if row["status"] == "error" and row["error"]:
        return {"__error__": row["error"]}
    if row["status"] == "interrupted" and row["interrupts"]:
        interrupts = [i for group in row["interrupts"].values() for i in group]
        if interrupts:
            return {"__interrupt__": interrupts}
    return row["values"] or {}


async def get_run_for(context: AppContext, thread_id: str, run_id: str, owner: str | None) -> dict:
    pool = await context.ready()
    return await run_records.get_row(pool, thread_id, run_id, owner)
