"""The v3 thread streaming protocol (``client.threads.stream`` of langgraph-sdk, RemoteGraph's
``astream_events(version="v3")``), as the official server serves it:

- ``POST /threads/{thread_id}/commands``: one command, JSON in and out (``run.start``,
  ``input.respond``; serve_app/runs/v3_commands.py). ``run.start`` creates the thread when the
  client minted its id.
- ``POST /threads/{thread_id}/stream/events``: SSE of the thread's wire events matching the
  body's filter (``channels``, ``namespaces``, ``depth``), those with ``seq > since`` when
  ``since`` is given.
- ``WebSocket /threads/{thread_id}/stream/events``: the same events for the socket's
  subscriptions (``subscription.subscribe`` / ``reconnect`` / ``unsubscribe``), and the
  commands above, ``agent.getTree`` too.

A thread nobody created yet (the client minted its id and has not sent ``run.start``) streams
as the official server's does: heartbeats, then its events once a run creates it. Another
owner's thread is a 404 (SSE) or a refused socket; one created by another owner while a stream
waited on its id ends that stream before any of its events (``_OwnerGate``).

Events come from the thread's tape (serve_app/runs/v3_tape.py): replayed from the thread's
first run and followed from there (one reader per thread and replica, shared by its streams),
so a reconnect on any replica resumes where it left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

from serve_app.auth import current_owner
from serve_app.errors import NotFound
from serve_app.records import threads as thread_records
from serve_app.routes.runs import check_uuid
from serve_app.routes.thread_stream import _watch_hub
from serve_app.runs.sse import SSE_HEADERS, frame, with_heartbeats
from serve_app.runs.v3_commands import error, malformed, run_command, success
from serve_app.runs.v3_session import Filter, V3Session, parse_filter, parse_since
from serve_app.runs.v3_tape import ThreadTapes

log = logging.getLogger(__name__)
router = APIRouter(tags=["Threads"])


def _body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


@router.post("/threads/{thread_id}/commands", summary="Send a v3 protocol command to a thread")
async def thread_command(thread_id: str, request: Request, owner: str | None = Depends(current_owner)):
    thread_id = check_uuid(thread_id, "thread")
    payload = _body(await request.body())
    if payload is None:
        return JSONResponse({"detail": "Invalid JSON body"}, status_code=400)
    bad = malformed(payload)
    if bad is not None:
        return JSONResponse(bad, status_code=400)
    answer = await run_command(request.app.state.context, thread_id, owner, payload)
    if answer is None:
        # Subscriptions live on a WebSocket; over HTTP the filter is the stream's body.
        known = payload["method"] in ("subscription.subscribe", "subscription.unsubscribe",
                                      "subscription.reconnect", "agent.getTree")
        answer = (error(payload["id"], "no_such_run", "No active run is bound to this thread.") if known
                  else error(payload["id"], "unknown_command", f"Unknown protocol command: {payload['method']}"))
    return JSONResponse(answer)


def _tapes(connection: Request | WebSocket) -> ThreadTapes:
    """The replica's shared thread tapes (one reader per thread for all its streams)."""
    tapes = getattr(connection.app.state, "thread_tapes", None)
    if tapes is None:
        tapes = connection.app.state.thread_tapes = ThreadTapes(connection.app.state.context,
                                                                _watch_hub(connection))
    return tapes


class _OwnerGate:
    """With API keys on, a stream's events only once its thread is the caller's: checked when
    the first events come (the thread exists then: its run created it)."""

    def __init__(self, context, thread_id: str, owner: str | None):
        self.context, self.thread_id, self.owner = context, thread_id, owner
        self.checked = owner is None

    async def allows(self) -> bool:
        if not self.checked:
            if not await thread_records.exists(await self.context.ready(), self.thread_id, self.owner):
                return False
            self.checked = True
        return True


async def _visibility(context, thread_id: str, owner: str | None) -> str:
    """``visible``, ``missing`` (nobody created it yet) or ``hidden`` (another owner's)."""
    pool = await context.ready()
    if await thread_records.exists(pool, thread_id, owner):
        return "visible"
    return "hidden" if owner is not None and await thread_records.exists(pool, thread_id, None) else "missing"


async def _sse(tapes: ThreadTapes, thread_id: str, wanted: Filter, since: int | None, gate: _OwnerGate):
    async with tapes.open(thread_id) as tape:
        async for batch in tape.follow():
            if not await gate.allows():
                return
            chunk = [frame(event["method"], orjson.dumps(event), str(event["seq"])) for event in batch
                     if (since is None or event["seq"] > since) and wanted.matches(event)]
            if chunk:
                yield b"".join(chunk)


@router.post("/threads/{thread_id}/stream/events", summary="Stream a thread's v3 protocol events (SSE)")
async def thread_events(thread_id: str, request: Request, owner: str | None = Depends(current_owner)):
    thread_id = check_uuid(thread_id, "thread")
    body = _body(await request.body())
    if body is None:
        return JSONResponse({"detail": "Invalid JSON body"}, status_code=400)
    try:
        wanted = parse_filter(body)
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    context = request.app.state.context
    if await _visibility(context, thread_id, owner) == "hidden":
        raise NotFound(f"Thread with ID {thread_id} not found")
    events = _sse(_tapes(request), thread_id, wanted, parse_since(body.get("since")),
                  _OwnerGate(context, thread_id, owner))
    return StreamingResponse(with_heartbeats(events),
                             media_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)


class _Socket:
    """One WebSocket: its subscriptions, the events of the tape so far (replayed to a new
    subscription), and one writer at a time."""

    def __init__(self, websocket: WebSocket, thread_id: str, owner: str | None, session: V3Session):
        self.gate = _OwnerGate(websocket.app.state.context, thread_id, owner)
        self.websocket = websocket
        self.thread_id = thread_id
        self.owner = owner
        self.session = session
        self.events: list[dict] = []
        self.subscriptions: dict[str, Filter] = {}
        self.lock = asyncio.Lock()

    async def send(self, message: dict) -> None:
        async with self.lock:
            await self.websocket.send_text(orjson.dumps(message).decode())

    async def pump(self, tape) -> None:
        async for batch in tape:
            if not await self.gate.allows():
                raise PermissionError(f"thread {self.thread_id} belongs to another owner")
            async with self.lock:
                self.events += batch
                for event in batch:
                    if any(f.matches(event) for f in self.subscriptions.values()):
                        await self.websocket.send_text(orjson.dumps(event).decode())

    async def subscribe(self, command: dict, *, reconnect: bool) -> dict:
        params = command.get("params") if isinstance(command.get("params"), dict) else {}
        try:
            wanted = parse_filter(params)
        except ValueError as exc:
            return error(command["id"], "invalid_argument", f"{command['method']}: {exc}")
        since = parse_since(params.get("since"))
        if reconnect and since is None:
            return error(command["id"], "invalid_argument",
                         "subscription.reconnect requires a non-negative integer since.")
        given = params.get("subscription_id")
        sub_id = given if reconnect and isinstance(given, str) and given else str(uuid.uuid4())
        async with self.lock:  # replay and install at once: no event falls between the two
            replay = [e for e in self.events if (since is None or e["seq"] > since) and wanted.matches(e)]
            for event in replay:
                await self.websocket.send_text(orjson.dumps(event).decode())
            self.subscriptions[sub_id] = wanted
        return success(command["id"], {"subscription_id": sub_id, "replayed_events": len(replay)},
                       self.session.seq)

    def unsubscribe(self, command: dict) -> dict:
        params = command.get("params") if isinstance(command.get("params"), dict) else {}
        sub_id = params.get("subscription_id")
        if not isinstance(sub_id, str):
            return error(command["id"], "invalid_argument", "subscription.unsubscribe requires a subscription_id.")
        if self.subscriptions.pop(sub_id, None) is None:
            return error(command["id"], "no_such_subscription", f"Unknown subscription: {sub_id}")
        return success(command["id"], {}, self.session.seq)

    async def handle(self, command: dict) -> dict:
        method = command["method"]
        if method == "subscription.subscribe":
            return await self.subscribe(command, reconnect=False)
        if method == "subscription.reconnect":
            return await self.subscribe(command, reconnect=True)
        if method == "subscription.unsubscribe":
            return self.unsubscribe(command)
        if method == "agent.getTree":
            return success(command["id"], {"tree": self.session.tree()}, self.session.seq)
        context = self.websocket.app.state.context
        answer = await run_command(context, self.thread_id, self.owner, command)
        if answer is None:
            return error(command["id"], "unknown_command", f"Unknown protocol command: {method}")
        return answer


@router.websocket("/threads/{thread_id}/stream/events")
async def thread_socket(websocket: WebSocket, thread_id: str):
    try:
        thread_id = str(uuid.UUID(thread_id))
    except ValueError:
        await websocket.close(code=1008, reason="thread_id must be a UUID")
        return
    owner = getattr(websocket.state, "owner", None)
    if await _visibility(websocket.app.state.context, thread_id, owner) == "hidden":
        await websocket.close(code=1008, reason=f"Thread with ID {thread_id} not found")
        return
    await websocket.accept()
    async with _tapes(websocket).open(thread_id) as tape:
        socket = _Socket(websocket, thread_id, owner, tape.session)
        await _serve_socket(socket, websocket, tape.follow())


async def _serve_socket(socket: _Socket, websocket: WebSocket, tape) -> None:
    thread_id = socket.thread_id
    pump = asyncio.get_running_loop().create_task(socket.pump(tape))
    try:
        while True:
            receiver = asyncio.ensure_future(websocket.receive_text())
            done, _ = await asyncio.wait({receiver, pump}, return_when=asyncio.FIRST_COMPLETED)
            if receiver not in done:
                receiver.cancel()
                pump.result()  # the tape only ends by failing, or by the owner gate
                return
            payload = _body(receiver.result().encode())
            answer = malformed(payload) if payload is not None else error(
                None, "invalid_argument", "Protocol commands must be valid JSON.")
            if answer is None:
                answer = await socket.handle(payload)
            await socket.send(answer)
    except WebSocketDisconnect:
        pass
    except PermissionError:
        with contextlib.suppress(Exception):
            await websocket.close(code=1008, reason="Thread not found")
    except Exception:
        log.exception("thread %s: v3 WebSocket failed", thread_id)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011, reason="thread stream failed")
    finally:
        pump.cancel()
        with contextlib.suppress(BaseException):
            await pump
