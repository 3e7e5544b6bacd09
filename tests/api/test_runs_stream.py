"""SSE streaming of runs: framing, headers, stream modes, errors, interrupts and resume."""

from __future__ import annotations

import asyncio

import httpx
import orjson


def parse_sse(raw: bytes) -> list[tuple[str, object, str | None]]:
    events = []
    for block in raw.split(b"\r\n\r\n"):
        if not block.strip() or block.startswith(b":"):
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
        events.append((fields[b"event"].decode(), orjson.loads(fields[b"data"]),
                       fields[b"id"].decode() if b"id" in fields else None))
    return events


async def raw_stream(api_url: str, path: str, body: dict | None = None, method: str = "POST",
                     headers: dict | None = None) -> tuple[httpx.Response, bytes]:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        async with http.stream(method, path, json=body, headers=headers) as response:
            raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    return response, raw


async def test_stream_frames_and_headers_match_the_official_server(api_url: str, lg_client) -> None:
    thread = await lg_client.threads.create()
    response, raw = await raw_stream(api_url, f"/threads/{thread['thread_id']}/runs/stream",
                                     {"assistant_id": "echo", "input": {"items": ["x"]},
                                      "stream_mode": ["values", "updates", "custom"]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    run_id = events[0][1]["run_id"]
    assert events[0] == ("metadata", {"run_id": run_id, "attempt": 1}, None)
    assert response.headers["location"] == f"/threads/{thread['thread_id']}/runs/{run_id}/stream"
    assert response.headers["content-location"] == f"/threads/{thread['thread_id']}/runs/{run_id}"
    assert raw.startswith(b"event: metadata\r\ndata: ")
    names = [name for name, _, _ in events]
    assert names == ["metadata", "values", "custom", "updates", "values", "updates"]
    assert events[1][1] == {"items": ["x"]}
    assert events[2][1] == {"custom": "hi"}
    assert events[3][1] == {"step": {"items": ["a"]}}
    assert events[-2][1] == {"items": ["x", "a"]}


async def test_sdk_stream_passes_every_native_mode(lg_client) -> None:
    thread = await lg_client.threads.create()
    seen = set()
    async for part in lg_client.runs.stream(thread["thread_id"], "echo", input={"items": []},
                                            stream_mode=["values", "updates", "debug", "tasks", "checkpoints",
                                                         "custom"]):
        seen.add(part.event)
    assert {"metadata", "values", "updates", "debug", "tasks", "checkpoints", "custom"} <= seen


async def test_messages_tuple_and_legacy_messages_modes(lg_client) -> None:
    thread = await lg_client.threads.create()
    parts = [p async for p in lg_client.runs.stream(
        thread["thread_id"], "chat", input={"messages": [{"role": "user", "content": "hi"}]},
        stream_mode=["messages-tuple", "messages"])]
    tuples = [p.data for p in parts if p.event == "messages"]
    assert tuples, [p.event for p in parts]
    text = "".join(chunk["content"] for chunk, _meta in tuples)
    assert text == "hello there friend"
    assert tuples[0][1]["langgraph_node"] == "chat"
    # As the official server (the oracle test checks it): with messages-tuple asked, tuples only.
    assert not [p.event for p in parts if p.event.startswith("messages/")]
    parts = [p async for p in lg_client.runs.stream(
        thread["thread_id"], "chat", input={"messages": [{"role": "user", "content": "hi"}]}, stream_mode="messages")]
    partial = [p.data for p in parts if p.event == "messages/partial"]
    assert partial[-1][0]["content"] == "hello there friend"
    assert partial[-1][0]["type"] == "ai"  # a whole message, as the official server sends
    assert any(p.event == "messages/metadata" for p in parts)


async def test_a_whole_message_from_a_node_is_messages_complete(lg_client) -> None:
    thread = await lg_client.threads.create()
    parts = [p async for p in lg_client.runs.stream(
        thread["thread_id"], "whole", input={"messages": []}, stream_mode="messages")]
    # As the official server: a node's returned message is complete, not a partial chunk.
    complete = [p.data for p in parts if p.event == "messages/complete"]
    assert [m["content"] for data in complete for m in data] == ["a whole reply"]
    assert not [p for p in parts if p.event == "messages/partial"]


async def test_subgraph_events_carry_their_namespace(lg_client) -> None:
    thread = await lg_client.threads.create()
    events = [p.event async for p in lg_client.runs.stream(thread["thread_id"], "nested", input={"items": []},
                                                           stream_mode="updates", stream_subgraphs=True)]
    assert "updates" in events
    assert any(e.startswith("updates|child:") for e in events), events


async def test_failed_run_streams_error_last_and_wait_returns_error(api_url: str, lg_client) -> None:
    thread = await lg_client.threads.create()
    _, raw = await raw_stream(api_url, f"/threads/{thread['thread_id']}/runs/stream",
                              {"assistant_id": "echo", "input": {"fail": True}})
    events = parse_sse(raw)
    assert events[-1][0] == "error"
    assert events[-1][1] == {"error": "ValueError", "message": "boom"}
    assert (await lg_client.threads.get(thread["thread_id"]))["status"] == "error"
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        other = (await http.post("/threads", json={})).json()
        response = await http.post(f"/threads/{other['thread_id']}/runs/wait",
                                   json={"assistant_id": "echo", "input": {"fail": True}})
    assert response.status_code == 200
    assert response.json() == {"__error__": {"error": "ValueError", "message": "boom"}}
    assert response.headers["location"].endswith("/join")


async def test_interrupt_then_resume_with_command(lg_client) -> None:
    thread = await lg_client.threads.create()
    tid = thread["thread_id"]
    result = await lg_client.runs.wait(tid, "echo", input={"items": [], "ask": True})
    assert result["__interrupt__"][0]["value"] == {"question": "ok?"}
    thread = await lg_client.threads.get(tid)
    assert thread["status"] == "interrupted"
    [interrupts] = thread["interrupts"].values()
    assert interrupts[0]["value"] == {"question": "ok?"}
    state = await lg_client.threads.get_state(tid)
    assert state["next"] == ["asker"]
    assert state["tasks"][0]["interrupts"][0]["value"] == {"question": "ok?"}
    resumed = await lg_client.runs.wait(tid, "echo", command={"resume": "yes"})
    assert resumed["answer"] == "yes"
    assert resumed["items"] == ["a", "asked"]
    assert (await lg_client.threads.get(tid))["status"] == "idle"


async def test_resumable_stream_can_be_rejoined_from_last_event_id(api_url: str, lg_client) -> None:
    thread = await lg_client.threads.create()
    tid = thread["thread_id"]
    _, raw = await raw_stream(api_url, f"/threads/{tid}/runs/stream",
                              {"assistant_id": "echo", "input": {"items": []}, "stream_resumable": True,
                               "stream_mode": ["values", "updates"]})
    events = parse_sse(raw)
    run_id = events[0][1]["run_id"]
    ids = [event_id for _, _, event_id in events[1:]]
    assert all(ids) and ids == sorted(ids, key=int)
    _, again = await raw_stream(api_url, f"/threads/{tid}/runs/{run_id}/stream", method="GET",
                                headers={"Last-Event-ID": ids[1]})
    replayed = parse_sse(again)
    # As the official server: a rejoin replays what followed Last-Event-ID, and no metadata event.
    assert "metadata" not in [e[0] for e in replayed]
    assert [e[2] for e in replayed] == ids[2:]


async def test_events_mode_streams_langchain_events(lg_client) -> None:
    thread = await lg_client.threads.create()
    parts = [p async for p in lg_client.runs.stream(thread["thread_id"], "echo", input={"items": []},
                                                    stream_mode="events")]
    kinds = [p.data["event"] for p in parts if p.event == "events"]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    assert any(p.data.get("name") == "step" for p in parts if p.event == "events")


async def test_command_goto_and_update_and_interrupt_before(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    paused = await lg_client.runs.wait(tid, "echo", input={"items": ["x"]}, interrupt_before=["asker"])
    assert paused == {"items": ["x", "a"]}
    assert (await lg_client.threads.get(tid))["status"] == "interrupted"
    assert (await lg_client.threads.get_state(tid))["next"] == ["asker"]
    resumed = await lg_client.runs.wait(tid, "echo", input=None)
    assert resumed == {"items": ["x", "a"]}
    assert (await lg_client.threads.get(tid))["status"] == "idle"
    jumped = await lg_client.runs.wait(tid, "echo", command={"goto": "step", "update": {"items": ["u"]}})
    assert jumped["items"] == ["x", "a", "u", "a"]


async def test_events_mode_with_values_streams_both(lg_client) -> None:
    thread = await lg_client.threads.create()
    names = [p.event async for p in lg_client.runs.stream(thread["thread_id"], "echo", input={"items": []},
                                                          stream_mode=["events", "values"])]
    assert names[0] == "metadata"
    assert "events" in names and names.count("values") == 2  # as without events mode


async def test_many_streams_at_once_are_served_concurrently(lg_client) -> None:
    # More concurrent streams than Serve's default per-replica limit (5): none may queue behind another.
    threads = [(await lg_client.threads.create())["thread_id"] for _ in range(8)]
    started = 0
    all_started = asyncio.Event()

    async def hold_open(tid: str) -> str:
        nonlocal started
        async for part in lg_client.runs.stream(tid, "durable", input={"items": []}):
            started += 1
            if started == len(threads):
                all_started.set()
            await all_started.wait()  # keep this stream open until every stream has begun
            return part.event
        return ""

    # The durable graph hangs on a run's first attempt, so no stream ends by itself.
    events = await asyncio.wait_for(asyncio.gather(*(hold_open(t) for t in threads)), 60)
    assert events == ["metadata"] * 8
    for tid in threads:
        for run in await lg_client.runs.list(tid):
            await lg_client.runs.cancel(tid, run["run_id"])
