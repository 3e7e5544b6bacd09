"""Runs on a thread through the official SDK: wait, background + join, stream."""

from __future__ import annotations


async def test_wait_returns_final_values(lg_client) -> None:
    thread = await lg_client.threads.create()
    result = await lg_client.runs.wait(thread["thread_id"], "echo", input={"items": ["x"]})
    assert result == {"items": ["x", "a"]}
    thread = await lg_client.threads.get(thread["thread_id"])
    assert thread["status"] == "idle"
    assert thread["values"] == {"items": ["x", "a"]}
