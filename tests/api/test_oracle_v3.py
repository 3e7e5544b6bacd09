"""The v3 thread streaming protocol side by side with the official server (``langgraph dev``,
tests/api/oracle/server.py): the same commands to both, over SSE and over a WebSocket, give
the same events (methods, namespaces, lifecycle phases, data shapes) and the same answers.

The graph is the API tests' echo graph on both sides: its input's values, a node, then an
interrupt that ``input.respond`` answers (its custom event is not on the v3 wire on either: the
graph registers no custom transformer); a run cancelled in its slow node (its end differs on
purpose, see its test); a chat run's values. ``V3_KNOWN_GAPS`` names the answers' differences
kept on purpose.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import pytest
from langgraph_sdk import get_client
from websockets.asyncio.client import connect

from tests.api.test_oracle_compare import differences

CHANNELS = ["values", "updates", "messages", "tools", "custom", "lifecycle", "input", "tasks"]
START = {"assistant_id": "echo", "input": {"items": ["x"], "ask": True}}
READ_TIMEOUT_S = 60
# Differences kept on purpose, each with its reason (none so far).
V3_KNOWN_GAPS: set[str] = set()


def _root_phase(event: dict) -> str | None:
    params = event.get("params") or {}
    if event.get("method") == "lifecycle" and not params.get("namespace"):
        return (params.get("data") or {}).get("event")
    return None


def _outline(events: list[dict]) -> list[tuple]:
    """What must be equal: each event's method, namespace and phase (lifecycle and messages)."""
    out = []
    for event in events:
        params = event["params"]
        data = params.get("data")
        phase = data.get("event") if isinstance(data, dict) and event["method"] in ("lifecycle", "messages") else None
        out.append((event["method"], tuple(params.get("namespace") or []), phase))
    return out


async def _command(http: httpx.AsyncClient, thread_id: str, command_id: int, method: str, params: dict) -> dict:
    response = await http.post(f"/threads/{thread_id}/commands",
                               json={"id": command_id, "method": method, "params": params})
    assert response.status_code == 200, response.text
    return response.json()


async def _sse_until(http: httpx.AsyncClient, thread_id: str, phase: str, since: int | None = None) -> list[dict]:
    """The thread's events (every channel) until the root lifecycle reaches ``phase``."""
    body: dict[str, Any] = {"channels": CHANNELS}
    if since is not None:
        body["since"] = since
    events: list[dict] = []
    async with asyncio.timeout(READ_TIMEOUT_S), http.stream(
            "POST", f"/threads/{thread_id}/stream/events", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(orjson.loads(line[5:]))
                if _root_phase(events[-1]) == phase:
                    return events
    raise AssertionError(f"the stream ended before {phase}: {events}")


async def sse_session(url: str) -> dict[str, Any]:
    thread_id = str(uuid.uuid4())  # minted by the client: run.start creates the thread
    async with httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http:
        started = await _command(http, thread_id, 1, "run.start", START)
        first = await _sse_until(http, thread_id, "interrupted")
        (request,) = [e for e in first if e["method"] == "input.requested"]
        responded = await _command(http, thread_id, 2, "input.respond", {
            "interrupt_id": request["params"]["data"]["interrupt_id"], "namespace": [], "response": "yes"})
        second = await _sse_until(http, thread_id, "completed", since=first[-1]["seq"])
        unknown = await _command(http, thread_id, 3, "nope.nothing", {})
        bad_respond = await _command(http, thread_id, 4, "input.respond", {"interrupt_id": "none", "response": 1})
        malformed = await http.post(f"/threads/{thread_id}/commands", json={"method": "run.start"})
        # A thread nobody created yet: the official server answers 200 and streams (heartbeats,
        # then the thread's events once a run creates it), so only the status is read here.
        async with http.stream("POST", f"/threads/{uuid.uuid4()}/stream/events",
                               json={"channels": ["values"]}) as missing:
            pass
        state = (await http.get(f"/threads/{thread_id}/state")).json()
    return {"run.start": started, "first": first, "input.respond": responded, "second": second,
            "unknown": unknown, "bad respond": bad_respond, "malformed": (malformed.status_code, malformed.json()),
            "unknown thread": missing.status_code, "values": state["values"]}


async def ws_session(url: str) -> dict[str, Any]:
    thread_id = str(uuid.uuid4())
    ws_url = url.replace("http://", "ws://") + f"/threads/{thread_id}/stream/events"
    events: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http, connect(ws_url) as socket:
        await socket.send(orjson.dumps({"id": 1, "method": "subscription.subscribe",
                                        "params": {"channels": CHANNELS}}).decode())
        subscribed = orjson.loads(await socket.recv())
        await _command(http, thread_id, 2, "run.start", START)
        async with asyncio.timeout(READ_TIMEOUT_S):
            while _root_phase(events[-1] if events else {}) != "interrupted":
                events.append(orjson.loads(await socket.recv()))
            (request,) = [e for e in events if e["method"] == "input.requested"]
            await socket.send(orjson.dumps({"id": 3, "method": "input.respond", "params": {
                "interrupt_id": request["params"]["data"]["interrupt_id"], "namespace": [],
                "response": "yes"}}).decode())
            answer = None
            while _root_phase(events[-1]) != "completed" or answer is None:
                message = orjson.loads(await socket.recv())
                if message.get("type") == "event":
                    events.append(message)
                else:
                    answer = message
    return {"subscribe": subscribed, "events": events, "input.respond": answer}


async def cancel_session(url: str) -> dict[str, Any]:
    """A run cancelled (REST, ``action=interrupt``) while it sleeps in its node, read over SSE
    until its root lifecycle says it stopped."""
    thread_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http:
        started = await _command(http, thread_id, 1, "run.start",
                                 {"assistant_id": "echo", "input": {"items": ["x"], "sleep": 5}})
        run_id = started["result"]["run_id"]
        events: list[dict] = []
        async with asyncio.timeout(READ_TIMEOUT_S), http.stream(
                "POST", f"/threads/{thread_id}/stream/events", json={"channels": CHANNELS}) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                events.append(orjson.loads(line[5:]))
                if events[-1]["method"] == "values":  # the input's values: the node sleeps now
                    cancelled = await http.post(f"/threads/{thread_id}/runs/{run_id}/cancel")
                    assert cancelled.status_code in (200, 202, 204), cancelled.text
                if _root_phase(events[-1]) not in (None, "running"):
                    break
        run = (await http.get(f"/threads/{thread_id}/runs/{run_id}")).json()
    return {"events": events, "run status": run["status"]}


CHAT_INPUT = {"messages": [{"role": "user", "id": "h-1", "content": [
    "look", {"type": "image_url", "image_url": {"url": "https://example.invalid/y.png"}}]}]}


async def values_session(url: str) -> list[Any]:
    """The ``values`` events' data of a chat run (a user message with list content, then the
    model's reply) read over SSE."""
    thread_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=url, timeout=READ_TIMEOUT_S) as http:
        await _command(http, thread_id, 1, "run.start", {"assistant_id": "chat", "input": CHAT_INPUT})
        events = await _sse_until(http, thread_id, "completed")
    return [e["params"]["data"] for e in events if e["method"] == "values"]


async def from_the_official_server(session: Any, url: str, *args: Any) -> Any:
    """``session`` against the official server, with a second try on a new thread if its own
    stream misses a run's end. Seen twice in CI over its WebSocket (2026-12-04: the SDK's thread
    stream, then ws_session): both runs 'success' and the thread idle, but the resumed run's end
    never arrived. Only the reference is retried; our server never is."""
    try:
        return await session(url, *args)
    except (AssertionError, TimeoutError):
        return await session(url, *args)


def _compare(official: dict, ours: dict, step: str) -> list[str]:
    return [line for line in differences(official, ours, step) if line not in V3_KNOWN_GAPS]


async def test_v3_over_sse_matches_the_official_server(official_url: str, api_url: str) -> None:
    theirs, ours = await from_the_official_server(sse_session, official_url), await sse_session(api_url)
    assert _outline(ours["first"]) == _outline(theirs["first"])
    assert _outline(ours["second"]) == _outline(theirs["second"])
    assert ours["values"] == theirs["values"] == {"items": ["x", "a", "asked"], "ask": False, "answer": "yes"}
    assert ours["unknown thread"] == theirs["unknown thread"] == 200
    assert ours["malformed"][0] == theirs["malformed"][0] == 400
    found = []
    for step in ("run.start", "input.respond", "unknown", "bad respond", "malformed"):
        found += _compare(theirs[step], ours[step], step)
    for step in ("first", "second"):
        for index, (official, mine) in enumerate(zip(theirs[step], ours[step], strict=True)):
            found += _compare(official, mine, f"{step}[{index}] {official['method']}")
    assert not found, "v3 answers differ from the official server's:\n" + "\n".join(found)
    # Numbered upwards (ours by run blocks, not from 1: serve_app/runs/v3_session.py), and the
    # second read resumed right after the first (since): the runs' events, none twice.
    seqs = [e["seq"] for e in ours["first"] + ours["second"]]
    assert seqs == sorted(set(seqs))
    assert [e["seq"] for e in theirs["first"]] == list(range(1, len(theirs["first"]) + 1))


async def test_v3_over_websocket_matches_the_official_server(official_url: str, api_url: str) -> None:
    theirs, ours = await from_the_official_server(ws_session, official_url), await ws_session(api_url)
    assert _outline(ours["events"]) == _outline(theirs["events"])
    found = _compare(theirs["subscribe"], ours["subscribe"], "subscribe")
    found += _compare(theirs["input.respond"], ours["input.respond"], "input.respond")
    assert not found, "v3 answers differ from the official server's:\n" + "\n".join(found)


async def _thread_facts(url: str, thread_id: str) -> str:
    """The thread's status and its runs' as the server says now, for a failure's message."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            thread = (await http.get(f"/threads/{thread_id}")).json()
            runs = (await http.get(f"/threads/{thread_id}/runs")).json()
        return f"thread status {thread.get('status')!r}, runs {[r.get('status') for r in runs]}"
    except Exception as exc:  # the message must come out whatever the server does
        return f"(the server did not say: {exc!r})"


async def sdk_output(url: str, which: str, transport: str) -> Any:
    """``thread.output`` of an echo run answered through the SDK's thread stream; a step that
    does not end within READ_TIMEOUT_S fails at once, naming the server, the step and what the
    server says of the thread (never a hang until the test's timeout)."""
    client = get_client(url=url, api_key=None)
    async with client.threads.stream(assistant_id="echo", transport=transport) as thread:
        step = "run.start"
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                await thread.run.start(input={"items": ["x"], "ask": True})
                step = "thread.values until the interrupt"
                async for _ in thread.values:
                    pass
                assert thread.interrupted and thread.interrupts[0]["interrupt_id"]
                step = "run.respond"
                await thread.run.respond("yes")
                step = "thread.output (the resumed run's root lifecycle 'completed')"
                return await thread.output
        except TimeoutError:
            raise AssertionError(
                f"the {which} server over {transport}: no end within {READ_TIMEOUT_S} s of {step}; thread "
                f"{thread.thread_id}: {await _thread_facts(url, thread.thread_id)}, interrupted={thread.interrupted}"
            ) from None


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_the_sdk_thread_stream_gives_the_same_output_on_both(official_url: str, api_url: str,
                                                                   transport: str) -> None:
    theirs = await from_the_official_server(sdk_output, official_url, "official", transport)
    ours = await sdk_output(api_url, "our", transport)
    assert ours == theirs
    assert ours["items"] == ["x", "a", "asked"]


async def test_a_cancelled_run_ends_failed_where_the_official_server_says_interrupted(official_url: str,
                                                                                       api_url: str) -> None:
    """A difference kept on purpose. The official server ends a cancelled run's root lifecycle
    ``interrupted`` (no error), which the SDK does not take as the run's end: ``thread.values``
    and ``thread.output`` wait forever (the official SDK suite's test_cancel, which wants the
    iterator to end within 10 s of the cancel, times out against it). Ours ends it ``failed``
    with the reason; everything before is the same."""
    theirs, ours = await cancel_session(official_url), await cancel_session(api_url)
    assert _outline(ours["events"])[:-1] == _outline(theirs["events"])[:-1] == [
        ("lifecycle", (), "running"), ("values", (), None)]
    assert theirs["events"][-1]["params"]["data"] == {"event": "interrupted", "graph_name": "echo"}
    assert ours["events"][-1]["params"]["data"] == {"event": "failed", "graph_name": "echo",
                                                    "error": "Run was cancelled"}
    assert ours["run status"] == theirs["run status"] == "interrupted"
    # What the difference is for: the SDK's iterators end after the cancel on ours.
    async with get_client(url=api_url, api_key=None).threads.stream(assistant_id="echo") as thread:
        started = await thread.run.start(input={"items": ["x"], "sleep": 5})
        cancelled = False
        async with asyncio.timeout(READ_TIMEOUT_S):
            async for snapshot in thread.values:
                if not cancelled and snapshot.get("items") == ["x"]:  # the run has started
                    await get_client(url=api_url, api_key=None).runs.cancel(thread.thread_id, started["run_id"])
                    cancelled = True
        assert cancelled


async def test_values_carry_messages_as_protocol_messages_as_on_the_official_server(official_url: str,
                                                                                     api_url: str) -> None:
    theirs, ours = await values_session(official_url), await values_session(api_url)
    assert _run_ids_masked(ours) == _run_ids_masked(theirs)
    # Content blocks (OpenAI's image_url as an image block), no LangChain-only fields; the reply
    # streamed under v3 is a v1 message (its content blocks, "lc_run--<run id>").
    assert ours[0]["messages"] == [{"type": "human", "id": "h-1", "content": [
        {"type": "text", "text": "look"}, {"type": "image", "url": "https://example.invalid/y.png"}]}]
    assert ours[-1]["messages"][-1]["content"] == [{"type": "text", "text": "hello there friend", "index": 0}]


def _run_ids_masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _run_ids_masked(entry) for key, entry in value.items()}
    if isinstance(value, list):
        return [_run_ids_masked(entry) for entry in value]
    return "lc_run--<run id>" if isinstance(value, str) and value.startswith("lc_run--") else value
