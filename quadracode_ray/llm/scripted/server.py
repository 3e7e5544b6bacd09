"""A local HTTP server that speaks the OpenAI and Anthropic wire protocols for the scripted model.

Endpoints: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic), both
streaming (SSE) and not, with tool calls; ``POST /v1/embeddings`` (OpenAI; deterministic
word-hash vectors, see embeddings.py); ``GET /v1/models``; ``GET /health``; and
``POST /_scripted/faults`` to make the next requests for one model name fail with given HTTP
statuses (429, 500, ...), which is how the retry tests and demos inject failures;
``POST /_scripted/delay`` sets the delay before each reply and, optionally
(``chunk_interval_s``), a pause between the pieces of a streamed reply, so a client sees it
arrive token by token as from a real model.

Run it standalone with ``python -m quadracode_ray.llm.scripted.server --port 8300``, or in
process with ``ScriptedServer().start()`` (a uvicorn server on a daemon thread).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from quadracode_ray.llm.scripted import wire
from quadracode_ray.llm.scripted.brain import decide
from quadracode_ray.llm.scripted.embeddings import openai_embeddings_response


class FaultPlan:
    """Per model name, the HTTP statuses the next requests fail with (consumed in order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[tuple[int, float | None]]] = {}
        self._stalls: dict[str, collections.deque[float]] = {}
        self._breaks: collections.Counter[str] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()

    def inject(self, model: str, statuses: list[int], retry_after_s: float | None = None) -> None:
        with self._lock:
            self._queues.setdefault(model, collections.deque()).extend((s, retry_after_s) for s in statuses)

    def inject_stall(self, model: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` requests for ``model`` wait ``seconds`` before answering (timeouts)."""
        with self._lock:
            self._stalls.setdefault(model, collections.deque()).extend([seconds] * count)

    def inject_stream_break(self, model: str, count: int = 1) -> None:
        """The next ``count`` streamed replies for ``model`` drop the connection after two events."""
        with self._lock:
            self._breaks[model] += count

    def take_stream_break(self, model: str) -> bool:
        with self._lock:
            if self._breaks[model] > 0:
                self._breaks[model] -= 1
                return True
            return False

    def next_fault(self, model: str) -> tuple[int, float | None] | None:
        with self._lock:
            self.requests[model] += 1
            queue = self._queues.get(model)
            return queue.popleft() if queue else None

    def next_stall(self, model: str) -> float:
        with self._lock:
            queue = self._stalls.get(model)
            return queue.popleft() if queue else 0.0


class InjectedStreamBreak(RuntimeError):
    """Raised inside a streamed body to drop the connection (fault injection)."""


def _breaking(events, model: str, faults: FaultPlan):
    if not faults.take_stream_break(model):
        yield from events
        return
    for index, event in enumerate(events):
        if index == 2:
            raise InjectedStreamBreak(f"injected stream break for {model}")
        yield event


async def _paced(events, state: dict[str, float]):
    """The events of a streamed reply, with the server's pause between pieces (none by default)."""
    for event in events:
        yield event
        if state["chunk_interval_s"] > 0:
            await asyncio.sleep(state["chunk_interval_s"])


def build_app(*, delay_s: float = 0.0, faults: FaultPlan | None = None, chunk_interval_s: float = 0.0) -> Starlette:
    faults = faults or FaultPlan()
    state = {"delay_s": delay_s, "chunk_interval_s": chunk_interval_s}

    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise wire.WireError(f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise wire.WireError("'model' is required")
        return body

    def _fault_response(model: str, error_body) -> Response | None:
        fault = faults.next_fault(model)
        if fault is None:
            return None
        status, retry_after = fault
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return JSONResponse(error_body(status, f"injected fault {status}"), status_code=status, headers=headers)

    async def chat_completions(request: Request) -> Response:
        try:
            body = await _body(request)
            turns, tools = wire.openai_turns(body)
        except wire.WireError as exc:
            return JSONResponse(wire.openai_error(400, str(exc)), status_code=400)
        if (fault := _fault_response(body["model"], wire.openai_error)) is not None:
            return fault
        decision = decide(turns, tools)
        await asyncio.sleep(state["delay_s"] + faults.next_stall(body["model"]))
        seed = wire.new_seed()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = wire.openai_stream(decision, body["model"], turns, seed, include_usage)
            return StreamingResponse(_paced(_breaking(events, body["model"], faults), state),
                                     media_type="text/event-stream")
        return JSONResponse(wire.openai_response(decision, body["model"], turns, seed))

    async def messages(request: Request) -> Response:
        try:
            body = await _body(request)
            turns, tools = wire.anthropic_turns(body)
        except wire.WireError as exc:
            return JSONResponse(wire.anthropic_error(400, str(exc)), status_code=400)
        if (fault := _fault_response(body["model"], wire.anthropic_error)) is not None:
            return fault
        decision = decide(turns, tools)
        await asyncio.sleep(state["delay_s"] + faults.next_stall(body["model"]))
        seed = wire.new_seed()
        if body.get("stream"):
            events = wire.anthropic_stream(decision, body["model"], turns, seed)
            return StreamingResponse(_paced(_breaking(events, body["model"], faults), state),
                                     media_type="text/event-stream")
        return JSONResponse(wire.anthropic_response(decision, body["model"], turns, seed))

    async def embeddings(request: Request) -> Response:
        try:
            body = await _body(request)
            return JSONResponse(openai_embeddings_response(body, body["model"]))
        except (wire.WireError, ValueError) as exc:
            return JSONResponse(wire.openai_error(400, str(exc)), status_code=400)

    async def inject_faults(request: Request) -> Response:
        body = await request.json()
        faults.inject(str(body["model"]), [int(s) for s in body.get("statuses", [])], body.get("retry_after_s"))
        if body.get("stall_s"):
            faults.inject_stall(str(body["model"]), float(body["stall_s"]), int(body.get("stall_count", 1)))
        return JSONResponse({"ok": True})

    async def set_delay(request: Request) -> Response:
        body = await request.json()
        state["delay_s"] = float(body["delay_s"])
        if "chunk_interval_s" in body:
            state["chunk_interval_s"] = float(body["chunk_interval_s"])
        return JSONResponse({"ok": True})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "default", "object": "model", "created": 0,
                                                         "owned_by": "quadracode-scripted"}]})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "requests": dict(faults.requests)})

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/_scripted/faults", inject_faults, methods=["POST"]),
        Route("/_scripted/delay", set_delay, methods=["POST"]),
    ])
    app.state.faults = faults
    app.state.settings = state
    return app


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ScriptedServer:
    """The scripted server on a daemon thread of this process."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0,
                 chunk_interval_s: float = 0.0):
        self.host, self.port = host, port or _free_port(host)
        self.faults = FaultPlan()
        self.app = build_app(delay_s=delay_s, faults=self.faults, chunk_interval_s=chunk_interval_s)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                                                     lifespan="off", access_log=False,
                                                     timeout_graceful_shutdown=1))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def delay_s(self) -> float:
        return self.app.state.settings["delay_s"]

    @delay_s.setter
    def delay_s(self, value: float) -> None:
        self.app.state.settings["delay_s"] = value

    def inject_faults(self, model: str, statuses: list[int], retry_after_s: float | None = None) -> None:
        self.faults.inject(model, statuses, retry_after_s)

    def inject_stall(self, model: str, seconds: float, count: int = 1) -> None:
        self.faults.inject_stall(model, seconds, count)

    def inject_stream_break(self, model: str, count: int = 1) -> None:
        self.faults.inject_stream_break(model, count)

    def start(self, timeout_s: float = 15.0) -> ScriptedServer:
        self._thread = threading.Thread(target=self._server.run, name=f"scripted-llm-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the scripted model server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for stalled (fault-injected) requests
        if self._thread is not None:
            self._thread.join(timeout_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the scripted model over the OpenAI and Anthropic APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    print(json.dumps({"url": f"http://{args.host}:{args.port}"}), flush=True)
    uvicorn.run(build_app(delay_s=args.delay_ms / 1000), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
