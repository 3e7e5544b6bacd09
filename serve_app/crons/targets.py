"""What crons need of the rest of the API: resolving assistants, checking threads, making runs.

The one place crons touch the assistants/threads/runs code, so its changes are mended here.
Runs are made by ``serve_app.runs.service.create_run``, the entry point every caller uses.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from serve_app.context import AppContext
from serve_app.crons.models import SCHEDULE_FIELDS
from serve_app.crons.scheduler import CronTargetGone
from serve_app.records.assistants import get as get_assistant
from serve_app.records.threads import exists as thread_exists
from serve_app.runs.service import create_run, resolve_assistant_id
from serve_app.schemas import RunCreate


async def resolve_assistant(context: AppContext, value: str, owner: str | None) -> str:
    """The assistant's UUID (a graph name means its default assistant); 404 when there is none."""
    pool = await context.ready()
    assistant_id = resolve_assistant_id(context, value)
    await get_assistant(pool, assistant_id, owner)
    return assistant_id


async def check_thread(context: AppContext, thread_id: str, owner: str | None) -> None:
    if not await thread_exists(await context.ready(), thread_id, owner):
        raise HTTPException(status_code=404, detail=f"Thread with ID '{thread_id}' not found.")


def run_request(cron: dict) -> dict[str, Any]:
    """The run request of one fire: the cron's payload without its schedule fields."""
    body = {k: v for k, v in cron["payload"].items() if k not in SCHEDULE_FIELDS}
    body["assistant_id"] = str(cron["assistant_id"])
    # The payload's configurable.cron_id (the official shape) is no run input: the run is tagged
    # with the cron in its metadata, and a configurable next to a context would be refused.
    configurable = {k: v for k, v in ((body.get("config") or {}).get("configurable") or {}).items() if k != "cron_id"}
    config = {k: v for k, v in (body.get("config") or {}).items() if k != "configurable"}
    if configurable:
        config["configurable"] = configurable
    if config:
        body["config"] = config
    else:
        body.pop("config", None)
    if cron["thread_id"] is None:
        body["on_completion"] = cron["on_run_completed"] or "delete"
    return body


async def fire(context: AppContext, cron: dict) -> str:
    """Create the run of one fire; returns its id. Raises CronTargetGone when it never can be."""
    body = RunCreate.model_validate(run_request(cron))
    thread_id = None if cron["thread_id"] is None else str(cron["thread_id"])
    try:
        run = await create_run(context, body, thread_id=thread_id, owner=cron["owner"],
                               metadata={"cron_id": str(cron["cron_id"])})
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404:
            raise CronTargetGone(getattr(exc, "detail", str(exc))) from exc
        raise
    return str(run["run_id"])
