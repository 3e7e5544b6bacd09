"""The A2A endpoint over real HTTP: agent cards, message/send, message/stream, tasks/get and tasks/cancel."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

HEADERS = {"Accept": "application/json"}


def send_params(*parts: dict[str, Any], context_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"kind": "message", "role": "user", "messageId": uuid.uuid4().hex, "parts": list(parts)}
    if context_id:
        message["contextId"] = context_id
    return {"message": message}


async def rpc(lg_client, assistant: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    answer = await lg_client.http.post(f"/a2a/{assistant}", json={"jsonrpc": "2.0", "id": "r1", "method": method,
                                                                  "params": params}, headers=HEADERS)
    assert answer["jsonrpc"] == "2.0" and answer["id"] == "r1"
    return answer


async def test_agent_cards(lg_client, api_url: str) -> None:
    assistant = await lg_client.assistants.create("chat", name="Chatty", description="Says hello.")
    card = await lg_client.http.get(f"/a2a/{assistant['assistant_id']}/.well-known/agent-card.json")
    assert card["name"] == "Chatty" and card["description"] == "Says hello."
    assert card["url"] == f"{api_url}/a2a/{assistant['assistant_id']}"
    assert card["preferredTransport"] == "JSONRPC" and card["protocolVersion"]
    assert card["capabilities"]["streaming"] is True
    assert card["skills"][0]["id"] == f"{assistant['assistant_id']}-main"
    assert "securitySchemes" not in card  # auth is off in this deployment
    by_query = await lg_client.http.get("/.well-known/agent-card.json",
                                        params={"assistant_id": assistant["assistant_id"]})
    assert by_query == card
    assert (await lg_client.http.get(f"/a2a/{assistant['assistant_id']}"))["name"] == "Chatty"
    by_graph_name = await lg_client.http.get("/a2a/echo/.well-known/agent-card.json")
    assert by_graph_name["name"] == "echo"
    missing = httpx.get(f"{api_url}/a2a/{uuid.uuid4()}/.well-known/agent-card.json")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    assert httpx.get(f"{api_url}/.well-known/agent-card.json").status_code == 422


async def test_message_send_runs_the_assistant_on_the_context_thread(lg_client) -> None:
    answer = await rpc(lg_client, "chat", "message/send", send_params({"kind": "text", "text": "hi"}))
    task = answer["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed"
    context_id = task["contextId"]
    assert task["id"].startswith(f"{context_id}:")
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "hello there friend"}]
    assert task["history"][0]["parts"] == [{"kind": "text", "text": "hi"}]
    state = await lg_client.threads.get_state(context_id)
    assert [m["content"] for m in state["values"]["messages"]] == ["hi", "hello there friend"]

    got = (await rpc(lg_client, "chat", "tasks/get", {"id": task["id"]}))["result"]
    assert got["id"] == task["id"] and got["status"]["state"] == "completed"
    assert got["artifacts"][0]["parts"] == [{"kind": "text", "text": "hello there friend"}]

    again = (await rpc(lg_client, "chat", "message/send",
                       send_params({"kind": "text", "text": "again"}, context_id=context_id)))["result"]
    assert again["contextId"] == context_id and again["id"] != task["id"]
    state = await lg_client.threads.get_state(context_id)
    # (The test graph's reply always has one message id, so the second reply replaces the first.)
    contents = [m["content"] for m in state["values"]["messages"]]
    assert contents[0] == "hi" and contents[-1] == "again"


async def test_data_parts_are_graph_input_and_failures_are_failed_tasks(lg_client) -> None:
    done = (await rpc(lg_client, "echo", "message/send", send_params({"kind": "data", "data": {"items": ["x"]}})))
    assert done["result"]["artifacts"][0]["parts"] == [{"kind": "data", "data": {"items": ["x", "a"]}}]
    failed = (await rpc(lg_client, "echo", "message/send", send_params({"kind": "data", "data": {"fail": True}})))
    assert failed["result"]["status"]["state"] == "failed"
    assert "boom" in failed["result"]["status"]["message"]["parts"][0]["text"]


async def test_v1_method_names_get_v1_spellings(lg_client) -> None:
    answer = await rpc(lg_client, "echo", "SendMessage", send_params({"kind": "data", "data": {"items": []}}))
    assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_cancel_a_running_task(lg_client) -> None:
    thread = await lg_client.threads.create()
    run = await lg_client.runs.create(thread["thread_id"], "echo", input={"items": [], "sleep": 30})
    task_id = f"{thread['thread_id']}:{run['run_id']}"
    canceled = (await rpc(lg_client, "echo", "tasks/cancel", {"id": task_id}))["result"]
    assert canceled["status"]["state"] == "canceled"
    await lg_client.runs.join(thread["thread_id"], run["run_id"])
    assert (await rpc(lg_client, "echo", "tasks/get", {"id": task_id}))["result"]["status"]["state"] == "canceled"
    again = await rpc(lg_client, "echo", "tasks/cancel", {"id": task_id})
    assert again["error"]["code"] == -32002


async def test_protocol_errors(lg_client, api_url: str) -> None:
    unknown_task = await rpc(lg_client, "echo", "tasks/get", {"id": f"{uuid.uuid4()}:{uuid.uuid4()}"})
    assert unknown_task["error"]["code"] == -32001
    garbage_task = await rpc(lg_client, "echo", "tasks/get", {"id": "nope"})
    assert garbage_task["error"]["code"] == -32001
    no_message = await rpc(lg_client, "echo", "message/send", {})
    assert no_message["error"]["code"] == -32602
    bad_part = await rpc(lg_client, "echo", "message/send", send_params({"kind": "file", "file": {}}))
    assert bad_part["error"]["code"] == -32602
    bad_context = await rpc(lg_client, "echo", "message/send",
                            send_params({"kind": "text", "text": "x"}, context_id="not-a-uuid"))
    assert bad_context["error"]["code"] == -32602
    unknown_method = await rpc(lg_client, "echo", "tasks/resubscribe", {"id": "x"})
    assert unknown_method["error"]["code"] == -32601
    unknown_agent = await rpc(lg_client, str(uuid.uuid4()), "tasks/get", {"id": "x"})
    assert unknown_agent["error"]["code"] == -32602
    parse = httpx.post(f"{api_url}/a2a/echo", content=b"{", headers={"Content-Type": "application/json"})
    assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700


async def stream(api_url: str, assistant: str, params: dict[str, Any], *, method: str = "message/stream",
                 accept: str = "text/event-stream") -> list[dict[str, Any]]:
    """The JSON-RPC responses a message/stream sends, in order (SSE events named 'message')."""
    request = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    answers = []
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http, http.stream(
            "POST", f"/a2a/{assistant}", json=request, headers={"Accept": accept}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                assert event == "message"
                answer = json.loads(line.removeprefix("data:"))
                assert answer["jsonrpc"] == "2.0" and answer["id"] == 7
                answers.append(answer)
    return answers


def progress(answers: list[dict[str, Any]]) -> list[tuple]:
    """(kind, state, final) of each result: the shape of the conversation."""
    return [(a["result"]["kind"], (a["result"].get("status") or {}).get("state"), a["result"].get("final"))
            for a in answers]


async def test_message_stream_sends_the_task_its_progress_and_its_end(lg_client, api_url: str) -> None:
    answers = await stream(api_url, "chat", send_params({"kind": "text", "text": "hi"}))
    shape = progress(answers)
    assert shape[0] == ("task", "submitted", None)
    assert shape[-2:] == [("artifact-update", None, None), ("status-update", "completed", True)]
    working = [a["result"]["status"]["message"]["parts"][0]["text"] for a in answers[1:-2]]
    assert shape[1:-2] == [("status-update", "working", False)] * len(working) and working
    assert working[-1] == "hello there friend"  # the model's tokens, accumulated
    task = answers[0]["result"]
    assert task["history"][0]["parts"] == [{"kind": "text", "text": "hi"}]
    assert all(a["result"]["taskId"] == task["id"] and a["result"]["contextId"] == task["contextId"]
               for a in answers[1:])
    artifact = answers[-2]["result"]
    assert artifact["artifact"]["parts"] == [{"kind": "text", "text": "hello there friend"}]
    assert artifact["lastChunk"] is True and artifact["append"] is False
    # The streamed task is an ordinary task: tasks/get finds it, and the context's thread holds the turn.
    got = (await rpc(lg_client, "chat", "tasks/get", {"id": task["id"]}))["result"]
    assert got["status"]["state"] == "completed"
    state = await lg_client.threads.get_state(task["contextId"])
    assert [m["content"] for m in state["values"]["messages"]] == ["hi", "hello there friend"]


async def test_message_stream_failures_interrupts_and_v1(lg_client, api_url: str) -> None:
    failed = await stream(api_url, "echo", send_params({"kind": "data", "data": {"fail": True}}))
    assert progress(failed) == [("task", "submitted", None), ("status-update", "failed", True)]
    assert "boom" in failed[-1]["result"]["status"]["message"]["parts"][0]["text"]

    asked = await stream(api_url, "echo", send_params({"kind": "data", "data": {"ask": True}}))
    assert progress(asked) == [("task", "submitted", None), ("artifact-update", None, None),
                               ("status-update", "input-required", True)]
    assert asked[1]["result"]["artifact"]["parts"][0]["data"]["value"] == {"question": "ok?"}
    assert asked[2]["result"]["status"]["message"]["role"] == "agent"

    v1 = await stream(api_url, "echo", send_params({"kind": "data", "data": {"items": []}}),
                      method="SendStreamingMessage", accept="text/event-stream, application/json")
    assert v1[0]["result"]["task"]["status"]["state"] == "TASK_STATE_SUBMITTED"
    assert v1[-1]["result"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_message_stream_protocol_errors(api_url: str) -> None:
    bad_context = await stream(api_url, "echo", send_params({"kind": "text", "text": "x"}, context_id="nope"))
    assert len(bad_context) == 1 and bad_context[0]["error"]["code"] == -32602
    unknown_agent = await stream(api_url, str(uuid.uuid4()), send_params({"kind": "text", "text": "x"}))
    assert unknown_agent[0]["error"]["code"] == -32602
    # As the official server: a stream only to a client that accepts one, JSON only to one that accepts JSON.
    request = {"jsonrpc": "2.0", "id": 1, "method": "message/stream",
               "params": send_params({"kind": "text", "text": "x"})}
    refused = httpx.post(f"{api_url}/a2a/echo", json=request, headers={"Accept": "application/json"})
    assert refused.status_code == 400 and "text/event-stream" in refused.json()["error"]
    refused = httpx.post(f"{api_url}/a2a/echo", json={**request, "method": "tasks/get", "params": {"id": "x"}},
                         headers={"Accept": "text/event-stream"})
    assert refused.status_code == 400 and "application/json" in refused.json()["error"]
