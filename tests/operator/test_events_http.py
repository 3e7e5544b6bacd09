"""The event log over HTTP: history with filters and cursors from Postgres, and the live SSE
stream from the bus, resumed with Last-Event-ID without a gap or a repeat."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from tests.operator.conftest import sse_events


async def test_history_filters_and_pages(fabric, http: httpx.AsyncClient):
    thread_id = f"ev-{uuid.uuid4().hex[:8]}"
    for i in range(5):
        await fabric.events.publish_event.remote("op-tester", "op_test", {"text": f"tick {i}", "i": i},
                                                 thread_id=thread_id)
    await fabric.events.publish_event.remote("op-other", "op_other", {"text": "tock"}, thread_id=thread_id)
    await fabric.events.flush.remote()

    page = (await http.get("/events", params={"thread_id": thread_id, "kind": "op_test", "limit": 2})).json()
    assert [e["payload"]["i"] for e in page["events"]] == [0, 1] and page["has_more"] is True
    rest = (await http.get("/events", params={"thread_id": thread_id, "kind": "op_test",
                                              "cursor": page["next_cursor"]})).json()
    assert [e["payload"]["i"] for e in rest["events"]] == [2, 3, 4] and rest["has_more"] is False
    newest = (await http.get("/events", params={"thread_id": thread_id, "order": "desc", "limit": 1})).json()
    assert newest["events"][0]["kind"] == "op_other"
    by_sender = (await http.get("/events", params={"thread_id": thread_id, "sender": "op-other"})).json()
    assert [e["payload"]["text"] for e in by_sender["events"]] == ["tock"]
    both_kinds = (await http.get("/events", params=[("thread_id", thread_id), ("kind", "op_test"),
                                                    ("kind", "op_other")])).json()
    assert len(both_kinds["events"]) == 6
    regex = (await http.get("/events", params={"thread_id": thread_id, "regex": r'"text":"tick [34]"'})).json()
    assert [e["payload"]["i"] for e in regex["events"]] == [3, 4]
    first = page["events"][0]["created_at"]
    assert all(e["created_at"] >= first for e in (await http.get(
        "/events", params={"thread_id": thread_id, "since": first})).json()["events"])
    assert (await http.get("/events", params={"thread_id": thread_id, "until": first})).json()["events"] == []


async def test_bad_filters_are_422s_with_the_reason(http: httpx.AsyncClient):
    bad = await http.get("/events", params={"regex": "(unclosed"})
    assert bad.status_code == 422 and "regular expression" in bad.json()["detail"]
    assert (await http.get("/events/stream", params={"regex": "[z-a]"})).status_code == 422
    assert (await http.get("/events", params={"limit": 0})).status_code == 422
    assert (await http.get("/events", params={"since": "yesterday"})).status_code == 422
    assert (await http.get("/events/stream", headers={"Last-Event-ID": "abc"})).status_code == 422


async def _read_envelopes(client: httpx.AsyncClient, params: dict, want: int, headers: dict | None = None,
                          ) -> tuple[list[dict], int]:
    """Read ``want`` envelopes from the stream, then disconnect; also counts heartbeats seen.

    One network chunk can carry several envelopes (a replay from a cursor comes in a batch), so
    exactly the first ``want`` are returned: a resume from the last of them must see the rest.
    """
    got: list[dict] = []
    heartbeats = 0
    async with client.stream("GET", "/events/stream", params=params, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                heartbeats += block.strip() == ": heartbeat"
                for event in sse_events(block + "\n\n"):
                    got.append({**json.loads(event["data"]), "event_id": event["id"]})
            if len(got) >= want:
                break
    return got[:want], heartbeats


async def test_the_live_stream_filters_and_resumes_with_last_event_id(fabric, api: str):
    thread_id = f"live-{uuid.uuid4().hex[:8]}"
    params = {"thread_id": thread_id, "kind": "op_live", "heartbeat_s": 0.3}

    async def publish(start: int, n: int) -> None:
        for i in range(start, start + n):
            await fabric.events.publish_event.remote("op-tester", "op_live", {"i": i}, thread_id=thread_id)
            await fabric.events.publish_event.remote("op-tester", "op_noise", {"i": i}, thread_id=thread_id)

    async with httpx.AsyncClient(base_url=api, timeout=120) as client:
        # Start from a known position (the log's newest seq), so nothing published after it is missed.
        cursor = (await client.get("/events", params={"order": "desc", "limit": 1})).json()["next_cursor"] or 0
        publisher = asyncio.ensure_future(publish(0, 6))
        first_half, _ = await _read_envelopes(client, {**params, "cursor": cursor}, 3)
        await publisher
        assert [e["payload"]["i"] for e in first_half] == [0, 1, 2]
        assert all(e["kind"] == "op_live" and e["thread_id"] == thread_id for e in first_half)
        # Resume after the last event received: the rest arrives, nothing twice, nothing skipped.
        second_half, _ = await _read_envelopes(client, params, 3, headers={"Last-Event-ID": first_half[-1]["event_id"]})
        assert [e["payload"]["i"] for e in second_half] == [3, 4, 5]
        assert all(e["event_id"] == str(e["seq"]) for e in first_half + second_half)
        assert second_half[0]["seq"] > first_half[-1]["seq"]
        # A quiet stream sends heartbeats.
        quiet = {"thread_id": f"quiet-{uuid.uuid4().hex[:6]}", "heartbeat_s": 0.2}
        async with client.stream("GET", "/events/stream", params=quiet) as response:
            seen = ""
            async for text in response.aiter_text():
                seen += text
                if seen.count(": heartbeat") >= 2:
                    break
        assert seen.count(": heartbeat") >= 2
