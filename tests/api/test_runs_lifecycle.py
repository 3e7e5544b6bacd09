"""Background runs, join, cancel, multitask strategies, stateless runs, webhooks, validation."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.api.run_gate import RunGate
from tests.api.test_runs_stream import parse_sse


async def until(check, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``check`` (async) until it returns a truthy value, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)


async def run_status(lg_client, tid: str, rid: str) -> str:
    return (await lg_client.runs.get(tid, rid))["status"]


async def test_background_run_then_join_get_and_list(lg_client) -> None:
    thread = await lg_client.threads.create(metadata={"k": "v"})
    tid = thread["thread_id"]
    run = await lg_client.runs.create(tid, "echo", input={"items": ["x"]}, metadata={"tag": 1})
    assert run["status"] in ("pending", "running", "success")
    assert run["thread_id"] == tid and run["multitask_strategy"] == "enqueue"
    assert await lg_client.runs.join(tid, run["run_id"]) == {"items": ["x", "a"]}
    got = await lg_client.runs.get(tid, run["run_id"])
    assert got["status"] == "success"
    assert got["metadata"]["tag"] == 1
    listed = await lg_client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert (await lg_client.threads.get(tid))["metadata"]["graph_id"] == "echo"


async def test_enqueue_runs_one_after_another(lg_client, tmp_path) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    gate = RunGate(tmp_path)  # the first run stays active until the thread was seen busy
    first = await lg_client.runs.create(tid, "echo", input=gate.held(items=["1"]))
    second = await lg_client.runs.create(tid, "echo", input={"items": ["2"]}, multitask_strategy="enqueue")
    assert (await lg_client.threads.get(tid))["status"] == "busy"
    gate.release()
    assert await lg_client.runs.join(tid, second["run_id"]) == {"items": ["1", "a", "2", "a"], "hold": str(gate.path)}
    assert await run_status(lg_client, tid, first["run_id"]) == "success"
    assert (await lg_client.threads.get(tid))["status"] == "idle"


async def test_reject_interrupt_and_rollback_strategies(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    slow = await lg_client.runs.create(tid, "echo", input={"items": ["slow"], "sleep": 30})
    await until(lambda: _is(lg_client, tid, slow["run_id"], "running"))
    with pytest.raises(ConflictError):
        await lg_client.runs.create(tid, "echo", input={"items": []}, multitask_strategy="reject")
    # "sleep" is a state key that keeps its last value: the runs after a slow one set it back to 0.
    interrupting = await lg_client.runs.create(tid, "echo", input={"items": ["new"], "sleep": 0},
                                               multitask_strategy="interrupt")
    await lg_client.runs.join(tid, interrupting["run_id"])
    assert await run_status(lg_client, tid, slow["run_id"]) == "interrupted"
    assert await run_status(lg_client, tid, interrupting["run_id"]) == "success"

    slow2 = await lg_client.runs.create(tid, "echo", input={"items": ["slow2"], "sleep": 30})
    await until(lambda: _is(lg_client, tid, slow2["run_id"], "running"))
    rolling = await lg_client.runs.create(tid, "echo", input={"items": ["roll"], "sleep": 0},
                                          multitask_strategy="rollback")
    values = await lg_client.runs.join(tid, rolling["run_id"])
    assert "slow2" not in values["items"] and values["items"][-2:] == ["roll", "a"]
    with pytest.raises(NotFoundError):
        await lg_client.runs.get(tid, slow2["run_id"])


async def _is(lg_client, tid: str, rid: str, status: str) -> bool:
    return await run_status(lg_client, tid, rid) == status


async def test_cancel_running_and_pending_runs(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    slow = await lg_client.runs.create(tid, "echo", input={"items": [], "sleep": 30})
    queued = await lg_client.runs.create(tid, "echo", input={"items": ["q"]})
    await until(lambda: _is(lg_client, tid, slow["run_id"], "running"))
    await lg_client.runs.cancel(tid, queued["run_id"])
    assert await run_status(lg_client, tid, queued["run_id"]) == "interrupted"
    await lg_client.runs.cancel(tid, slow["run_id"], wait=True)
    assert await run_status(lg_client, tid, slow["run_id"]) == "interrupted"
    assert (await lg_client.threads.get(tid))["status"] == "idle"
    with pytest.raises(NotFoundError):
        await lg_client.runs.cancel(tid, slow["run_id"])


async def test_after_seconds_delays_the_start(lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(tid, "echo", input={"items": []}, after_seconds=1)
    assert await run_status(lg_client, tid, run["run_id"]) == "pending"
    assert await lg_client.runs.join(tid, run["run_id"]) == {"items": ["a"]}


async def test_stateless_runs_wait_stream_batch_and_keep(api_url: str, lg_client) -> None:
    assert await lg_client.runs.wait(None, "echo", input={"items": ["s"]}) == {"items": ["s", "a"]}
    events = [p.event async for p in lg_client.runs.stream(None, "echo", input={"items": []})]
    assert events[0] == "metadata" and "values" in events
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        created = await http.post("/runs", json={"assistant_id": "echo", "input": {"items": []}})
        # As the official server: a stateless run is at /runs/{run_id}.
        assert created.headers["content-location"] == f"/runs/{created.json()['run_id']}"
        batch = await http.post("/runs/batch", json=[{"assistant_id": "echo", "input": {"items": [str(i)]},
                                                      "on_completion": "keep"} for i in range(3)])
        assert batch.status_code == 200
        runs = batch.json()
        assert len(runs) == 3
        for run in runs:
            joined = await http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join")
            assert joined.json()["items"][-1] == "a"


async def test_delete_run_and_cancel_by_status(api_url: str, lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(tid, "echo", input={"items": []})
    await lg_client.runs.join(tid, run["run_id"])
    await lg_client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await lg_client.runs.get(tid, run["run_id"])
    slow = await lg_client.runs.create(tid, "echo", input={"items": [], "sleep": 30})
    await until(lambda: _is(lg_client, tid, slow["run_id"], "running"))
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        response = await http.post("/runs/cancel", json={"thread_id": tid, "run_ids": [slow["run_id"]]})
        assert response.status_code == 204
    await until(lambda: _is(lg_client, tid, slow["run_id"], "interrupted"))


async def test_on_disconnect_cancel_stops_the_run(api_url: str, lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        async with http.stream("POST", f"/threads/{tid}/runs/stream",
                               json={"assistant_id": "echo", "input": {"items": [], "sleep": 30},
                                     "on_disconnect": "cancel"}) as response:
            async for chunk in response.aiter_bytes():
                run_id = parse_sse(chunk)[0][1]["run_id"]
                break
    await until(lambda: _is(lg_client, tid, run_id, "interrupted"))
    assert (await lg_client.threads.get(tid))["status"] == "idle"


async def test_join_stream_of_a_running_run(api_url: str, lg_client) -> None:
    tid = (await lg_client.threads.create())["thread_id"]
    run = await lg_client.runs.create(tid, "echo", input={"items": [], "sleep": 0.5}, stream_mode=["values"])
    parts = [p async for p in lg_client.runs.join_stream(tid, run["run_id"])]
    # As the official server: joining a run streams its events, with no metadata event of its own.
    assert "metadata" not in [p.event for p in parts]
    assert parts[-1].event == "values" and parts[-1].data == {"items": ["a"], "sleep": 0.5}


async def test_webhook_receives_the_finished_run(lg_client) -> None:
    received: asyncio.Queue = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
        await received.put(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        tid = (await lg_client.threads.create())["thread_id"]
        run = await lg_client.runs.create(tid, "echo", input={"items": []}, webhook=f"http://127.0.0.1:{port}/hook")
        import orjson

        payload = orjson.loads(await asyncio.wait_for(received.get(), 30))
    assert payload["run_id"] == run["run_id"]
    assert payload["status"] == "success"
    assert payload["values"] == {"items": ["a"]}


async def test_validation_and_unknown_ids(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        cases = [
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "nope"}, 422),
            ("POST", f"/threads/{uuid.uuid4()}/runs", {"assistant_id": "echo"}, 404),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "stream_mode": "bogus"}, 422),
            ("POST", f"/threads/{tid}/runs", {"input": {}}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "after_seconds": -1}, 422),
            ("POST", f"/threads/{tid}/runs", {"assistant_id": "echo", "multitask_strategy": "x"}, 422),
            ("POST", "/runs/wait", {"assistant_id": "echo", "command": {"resume": 1}}, 400),
            ("GET", "/threads/not-a-uuid/runs", None, 422),
            ("GET", f"/threads/{tid}/runs/{uuid.uuid4()}", None, 404),
            ("POST", f"/threads/{tid}/runs/{uuid.uuid4()}/cancel", None, 404),
        ]
        for method, path, body, expected in cases:
            response = await http.request(method, path, json=body)
            assert response.status_code == expected, (method, path, body, response.text)
            assert "detail" in response.json()
        created = await http.post(f"/threads/{uuid.uuid4()}/runs/wait",
                                  json={"assistant_id": "echo", "input": {"items": []}, "if_not_exists": "create"})
        assert created.json() == {"items": ["a"]}


async def test_on_disconnect_cancel_applies_to_wait(api_url: str, lg_client) -> None:
    """Ten times over: a client's departure was missed now and then (HAProxy's splicing,
    quadracode_ray/haproxy_errors.py), and one try passed most of the time anyway."""
    for _ in range(10):
        tid = (await lg_client.threads.create())["thread_id"]
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
            request = asyncio.ensure_future(http.post(
                f"/threads/{tid}/runs/wait",
                json={"assistant_id": "echo", "input": {"items": [], "sleep": 30}, "on_disconnect": "cancel"}))
            runs = await until(lambda tid=tid: _running_runs(lg_client, tid))
            request.cancel()  # the client goes away mid-wait
        await until(lambda tid=tid, runs=runs: _is(lg_client, tid, runs[0]["run_id"], "interrupted"))


async def _running_runs(lg_client, tid: str) -> list:
    return [r for r in await lg_client.runs.list(tid) if r["status"] == "running"]
