"""Cron routes over real HTTP with the official langgraph-sdk client, and crons firing real runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

CRON_KEYS = {"cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time", "schedule", "timezone",
             "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata", "enabled"}
YEARLY = "0 0 1 1 *"  # never due while a test runs


@pytest.fixture
def tag() -> str:
    """Metadata value of this test's own crons, so tests sharing the deployment never meet."""
    return uuid.uuid4().hex


async def test_create_get_update_delete_stateless_cron(lg_client, tag: str) -> None:
    end = datetime.now(UTC) + timedelta(days=30)
    cron = await lg_client.crons.create("echo", schedule="*/5 * * * *", input={"items": []},
                                        metadata={"tag": tag}, end_time=end, timezone="Europe/Paris")
    assert set(cron) == CRON_KEYS
    assert cron["thread_id"] is None
    assert cron["on_run_completed"] == "delete"
    assert cron["schedule"] == "*/5 * * * *" and cron["timezone"] == "Europe/Paris"
    assert cron["enabled"] is True and cron["metadata"] == {"tag": tag}
    assert cron["payload"]["input"] == {"items": []}
    next_run = datetime.fromisoformat(cron["next_run_date"])
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(minutes=5)
    assert next_run.minute % 5 == 0 and next_run.second == 0

    fetched = await lg_client.http.get(f"/runs/crons/{cron['cron_id']}")
    assert fetched == cron

    updated = await lg_client.crons.update(cron["cron_id"], schedule="0 3 * * *", enabled=False,
                                           metadata={"more": 1}, input={"items": ["hi"]}, end_time=None)
    assert updated["schedule"] == "0 3 * * *" and updated["enabled"] is False
    assert updated["metadata"] == {"tag": tag, "more": 1}
    assert updated["payload"]["input"] == {"items": ["hi"]}
    assert updated["payload"]["assistant_id"] == cron["payload"]["assistant_id"]
    assert updated["end_time"] is None
    assert datetime.fromisoformat(updated["next_run_date"]).astimezone(ZoneInfo("Europe/Paris")).hour == 3
    assert updated["updated_at"] > cron["updated_at"]

    await lg_client.crons.delete(cron["cron_id"])
    with pytest.raises(NotFoundError):
        await lg_client.http.get(f"/runs/crons/{cron['cron_id']}")
    with pytest.raises(NotFoundError):
        await lg_client.crons.delete(cron["cron_id"])


async def test_thread_cron_search_and_count(lg_client, tag: str) -> None:
    thread = await lg_client.threads.create()
    on_thread = await lg_client.crons.create_for_thread(thread["thread_id"], "echo", schedule=YEARLY,
                                                        metadata={"tag": tag, "kind": "thread"})
    assert on_thread["thread_id"] == thread["thread_id"]
    assert on_thread["on_run_completed"] is None
    stateless = [await lg_client.crons.create("echo", schedule=YEARLY, metadata={"tag": tag, "n": n})
                 for n in range(3)]

    mine = await lg_client.crons.search(metadata={"tag": tag}, limit=10)
    assert {c["cron_id"] for c in mine} == {on_thread["cron_id"], *(c["cron_id"] for c in stateless)}
    assert [c["cron_id"] for c in mine][0] == stateless[-1]["cron_id"]  # newest first by default
    by_thread = await lg_client.crons.search(thread_id=thread["thread_id"])
    assert [c["cron_id"] for c in by_thread] == [on_thread["cron_id"]]
    by_graph_name = await lg_client.crons.search(assistant_id="echo", metadata={"tag": tag})
    assert len(by_graph_name) == 4

    page = await lg_client.crons.search(metadata={"tag": tag}, limit=2, offset=1, sort_by="created_at",
                                        sort_order="asc", select=["cron_id", "schedule"])
    assert [c["cron_id"] for c in page] == [stateless[0]["cron_id"], stateless[1]["cron_id"]]
    assert all(set(c) == {"cron_id", "schedule"} for c in page)

    assert await lg_client.crons.count(metadata={"tag": tag}) == 4
    assert await lg_client.crons.count(thread_id=thread["thread_id"]) == 1

    async with httpx.AsyncClient(base_url=lg_client.http.client.base_url) as http:
        response = await http.post("/runs/crons/search", json={"metadata": {"tag": tag}, "limit": 3})
    assert response.headers["x-pagination-next"] == "3"


async def test_bad_cron_input_gets_4xx_and_creates_nothing(lg_client, api_url: str, tag: str) -> None:
    with pytest.raises(UnprocessableEntityError):
        await lg_client.crons.create("echo", schedule="every day", metadata={"tag": tag})
    with pytest.raises(UnprocessableEntityError):
        await lg_client.crons.create("echo", schedule=YEARLY, timezone="Mars/Olympus", metadata={"tag": tag})
    with pytest.raises(NotFoundError):
        await lg_client.crons.create(str(uuid.uuid4()), schedule=YEARLY, metadata={"tag": tag})
    with pytest.raises(NotFoundError):
        await lg_client.crons.create_for_thread(str(uuid.uuid4()), "echo", schedule=YEARLY,
                                                metadata={"tag": tag})
    async with httpx.AsyncClient(base_url=api_url) as http:
        unknown_field = await http.post("/runs/crons", json={"assistant_id": "echo", "schedule": YEARLY,
                                                             "metadata": {"tag": tag}, "bogus": 1})
        bad_id = await http.get("/runs/crons/not-a-uuid")
        empty_patch = await http.patch(f"/runs/crons/{uuid.uuid4()}", json={})
        bad_stream_mode = await http.post("/runs/crons", json={"assistant_id": "echo", "schedule": YEARLY,
                                                               "stream_mode": "loud", "metadata": {"tag": tag}})
    assert unknown_field.status_code == 422 and "bogus" in unknown_field.text
    assert bad_id.status_code == 422
    assert empty_patch.status_code == 400
    assert bad_stream_mode.status_code == 422
    assert await lg_client.crons.count(metadata={"tag": tag}) == 0

    cron = await lg_client.crons.create("echo", schedule=YEARLY, metadata={"tag": tag})
    with pytest.raises(UnprocessableEntityError):
        await lg_client.crons.update(cron["cron_id"], schedule="nope")
    assert (await lg_client.http.get(f"/runs/crons/{cron['cron_id']}"))["schedule"] == YEARLY


async def test_thread_cron_fires_runs_on_its_thread(lg_client, tag: str) -> None:
    thread = await lg_client.threads.create()
    cron = await lg_client.crons.create_for_thread(thread["thread_id"], "echo", schedule="* * * * * *",
                                                   input={"items": ["tick"]},
                                                   metadata={"tag": tag})
    try:
        deadline = asyncio.get_running_loop().time() + 30
        runs: list[dict] = []
        while len(runs) < 2:
            assert asyncio.get_running_loop().time() < deadline, f"cron made {len(runs)} runs in 30 s"
            await asyncio.sleep(0.2)  # polling the API for runs the scheduler makes (deadline above)
            runs = await lg_client.runs.list(thread["thread_id"])
    finally:
        await lg_client.crons.delete(cron["cron_id"])
    assert all(run["metadata"]["cron_id"] == cron["cron_id"] for run in runs)
    assert all(run["thread_id"] == thread["thread_id"] for run in runs)
    assert len({run["run_id"] for run in runs}) == len(runs)


async def test_deleting_a_thread_deletes_its_crons(lg_client, tag: str) -> None:
    thread = await lg_client.threads.create()
    cron = await lg_client.crons.create_for_thread(thread["thread_id"], "echo", schedule=YEARLY,
                                                   metadata={"tag": tag})
    other = await lg_client.crons.create("echo", schedule=YEARLY, metadata={"tag": tag})
    await lg_client.threads.delete(thread["thread_id"])
    # At once, as the official server (not when the cron is next due); other crons stay.
    assert [c["cron_id"] for c in await lg_client.crons.search(metadata={"tag": tag})] == [other["cron_id"]]
    with pytest.raises(NotFoundError):
        await lg_client.http.get(f"/runs/crons/{cron['cron_id']}")


async def test_stateless_cron_fires_runs_on_new_threads_it_keeps(lg_client, tag: str) -> None:
    assistant = await lg_client.assistants.create("echo", name=f"cron-{tag}")
    cron = await lg_client.crons.create(assistant["assistant_id"], schedule="* * * * * *", input={"items": ["s"]},
                                        on_run_completed="keep", metadata={"tag": tag})
    try:
        deadline = asyncio.get_running_loop().time() + 30
        threads: list[dict] = []
        while len(threads) < 2:
            assert asyncio.get_running_loop().time() < deadline, f"cron made {len(threads)} threads in 30 s"
            await asyncio.sleep(0.2)  # polling for threads the scheduler makes (deadline above)
            threads = await lg_client.threads.search(metadata={"assistant_id": assistant["assistant_id"]})
    finally:
        await lg_client.crons.delete(cron["cron_id"])
    for thread in threads:  # one fresh thread per fire, each with the cron's run
        runs = await lg_client.runs.list(thread["thread_id"])
        assert [run["metadata"]["cron_id"] for run in runs] == [cron["cron_id"]]
