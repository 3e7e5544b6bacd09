"""The v3 protocol's run commands (``POST /threads/{thread_id}/commands``, and the same over a
WebSocket): ``run.start`` and ``input.respond``. Each answers ``{"type": "success", "id",
"result", "meta"}`` or ``{"type": "error", "id", "error", "message"}`` as the official server.

A run they start is an ordinary API run (``service.create_run``): queued, executed on a run
host, its events stored (resumable) so the thread's tape (serve_app/runs/v3_tape.py) can be
replayed from any replica. Its configurable carries the v3 marker (its run id), so the host streams
LangGraph's protocol events (runs/v3_events.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runs.v3_events import V3_MARKER
from serve_app.context import AppContext
from serve_app.errors import ApiError, NotFound
from serve_app.runs.service import create_run
from serve_app.schemas import RunCreate

MULTITASK_STRATEGIES = ("reject", "interrupt", "rollback", "enqueue")
INTERRUPT_SETTLE_S = 5.0
_ERROR_CODES = {400: "invalid_argument", 404: "not_found", 409: "conflict", 422: "invalid_argument"}


def error(command_id: Any, code: str, message: str) -> dict:
    return {"type": "error", "id": command_id, "error": code, "message": message}


def success(command_id: Any, result: dict, seq: int = 0) -> dict:
    return {"type": "success", "id": command_id, "result": result, "meta": {"applied_through_seq": seq}}


def malformed(payload: Any) -> dict | None:
    """The error answer for a command without an integer ``id`` and a string ``method``."""
    if isinstance(payload, dict) and isinstance(payload.get("id"), int) and not isinstance(payload.get("id"), bool) \
            and isinstance(payload.get("method"), str):
        return None
    command_id = payload.get("id") if isinstance(payload, dict) else None
    return error(command_id, "invalid_argument", "Protocol commands must include an integer id and string method.")


async def _thread_row(context: AppContext, thread_id: str, owner: str | None) -> dict | None:
    pool = await context.ready()
    async with pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT status, interrupts, metadata, owner FROM qr_threads WHERE thread_id = %s",
            (thread_id,))).fetchone()
    if row is None or (owner is not None and row["owner"] != owner):
        return None
    return row


async def _pending_interrupt_ids(context: AppContext, thread_id: str, owner: str | None) -> set[str]:
    """The thread's pending interrupts' ids; while a run is still in flight (its interrupt can
    reach a client before its end records it), waits for it up to INTERRUPT_SETTLE_S."""
    deadline = time.monotonic() + INTERRUPT_SETTLE_S
    while True:
        row = await _thread_row(context, thread_id, owner)
        ids = {entry["id"] for group in ((row or {}).get("interrupts") or {}).values()
               for entry in group if isinstance(entry, dict) and isinstance(entry.get("id"), str)}
        if ids or row is None or row["status"] != "busy" or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.05)


async def _start(context: AppContext, thread_id: str, owner: str | None, params: dict, *,
                 resume: Any = None, resuming: bool = False) -> dict:
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    configurable = config.get("configurable") if isinstance(config.get("configurable"), dict) else {}
    checkpoint_id = configurable.get("checkpoint_id")
    strategy = params.get("multitaskStrategy") or params.get("multitask_strategy")
    body: dict[str, Any] = {
        "assistant_id": params["assistant_id"],
        "input": None if resuming else params.get("input"),
        "command": {"resume": resume} if resuming else None,
        "config": {**config, "configurable": {k: v for k, v in configurable.items() if k != V3_MARKER}},
        "metadata": params.get("metadata") if isinstance(params.get("metadata"), dict) else None,
        "stream_mode": ["values"], "stream_resumable": True, "if_not_exists": "create",
        "multitask_strategy": strategy if strategy in MULTITASK_STRATEGIES else "enqueue",
    }
    if isinstance(checkpoint_id, str) and checkpoint_id:
        body["checkpoint_id"] = checkpoint_id
    return await create_run(context, RunCreate.model_validate(body), thread_id=thread_id, owner=owner,
                            protocol_v3=True)


async def run_start(context: AppContext, thread_id: str, owner: str | None, command: dict) -> dict:
    params = command.get("params") if isinstance(command.get("params"), dict) else {}
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        return error(command["id"], "invalid_argument", "run.start requires an assistant_id.")
    # As the official server: input on a thread waiting on an interrupt answers it (RemoteGraph
    # sends Command(resume=...) this way).
    resuming = params.get("input") is not None and bool(await _pending_interrupt_ids(context, thread_id, owner))
    try:
        run = await _start(context, thread_id, owner, params, resume=params.get("input"), resuming=resuming)
    except ApiError as exc:
        return error(command["id"], _ERROR_CODES.get(exc.status_code, "unknown_error"), str(exc.detail))
    return success(command["id"], {"run_id": str(run["run_id"])})


def _responses(params: dict) -> list[tuple[str, Any]] | str:
    """``[(interrupt_id, response)]`` of ``input.respond`` (one, or a ``responses`` batch), or
    the reason it is malformed."""
    batch = params.get("responses")
    if isinstance(batch, list):
        if not batch:
            return "input.respond requires at least one response."
        out = []
        for entry in batch:
            if not isinstance(entry, dict) or not isinstance(entry.get("interrupt_id"), str):
                return "input.respond responses entries require an interrupt_id."
            out.append((entry["interrupt_id"], entry.get("response")))
        return out
    if not isinstance(params.get("interrupt_id"), str):
        return "input.respond requires an interrupt_id."
    namespace = params.get("namespace", [])
    if not isinstance(namespace, list) or not all(isinstance(s, str) for s in namespace):
        return "input.respond requires namespace to be a list of strings."
    return [(params["interrupt_id"], params.get("response"))]


async def _resume_assistant(context: AppContext, thread_id: str, row: dict) -> str | None:
    assistant_id = (row.get("metadata") or {}).get("assistant_id")
    if isinstance(assistant_id, str):
        return assistant_id
    pool = await context.ready()
    async with pool.connection() as conn:
        run = await (await conn.execute(
            "SELECT assistant_id FROM qr_runs WHERE thread_id = %s ORDER BY created_at DESC LIMIT 1",
            (thread_id,))).fetchone()
    return str(run["assistant_id"]) if run else None


async def input_respond(context: AppContext, thread_id: str, owner: str | None, command: dict) -> dict:
    params = command.get("params") if isinstance(command.get("params"), dict) else {}
    entries = _responses(params)
    if isinstance(entries, str):
        return error(command["id"], "invalid_argument", entries)
    pending = await _pending_interrupt_ids(context, thread_id, owner)
    for interrupt_id, _ in entries:
        if interrupt_id not in pending:
            return error(command["id"], "no_such_interrupt", f"Unknown or already-consumed interrupt: {interrupt_id}")
    row = await _thread_row(context, thread_id, owner)
    assistant_id = await _resume_assistant(context, thread_id, row) if row else None
    if assistant_id is None:
        return error(command["id"], "no_such_run", "No interrupted run is bound to this thread.")
    try:
        await _start(context, thread_id, owner, {**params, "assistant_id": assistant_id},
                     resume={interrupt_id: response for interrupt_id, response in entries}, resuming=True)
    except (ApiError, NotFound) as exc:
        return error(command["id"], _ERROR_CODES.get(exc.status_code, "unknown_error"), str(exc.detail))
    return success(command["id"], {})


async def run_command(context: AppContext, thread_id: str, owner: str | None, command: dict) -> dict | None:
    """The answer to a run command, or None when ``command`` is not one."""
    if command["method"] == "run.start":
        return await run_start(context, thread_id, owner, command)
    if command["method"] == "input.respond":
        return await input_respond(context, thread_id, owner, command)
    return None
