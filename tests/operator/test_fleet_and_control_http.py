"""Fleet, control and system routes over HTTP against the real fabric: spawn, hotpath, kill,
the cap refused with a 409; the emergency stop of one thread and of everything halting runs
mid-command; the guardrails persisted and used by the next run without a restart; the
system's status; the new routes counted in /metrics."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.operator.conftest import FLEET_CAP
from tests.polling import eventually


async def test_spawn_mark_kill_and_the_cap(http: httpx.AsyncClient):
    assert (await http.get("/fleet/agents")).json() == []
    # The fleet's first two spawns at once: they share its first import of the agent's module
    # (concurrent first spawns once failed with a 500 on a module half imported).
    spawned, second_spawned = await asyncio.gather(
        http.post("/fleet/agents", json={"kind": "coder", "capabilities": ["python"], "hotpath": True}),
        http.post("/fleet/agents", json={"kind": "reviewer"}))
    assert spawned.status_code == 201, spawned.text
    assert second_spawned.status_code == 201, second_spawned.text
    agent = spawned.json()
    assert agent["kind"] == "coder" and agent["capabilities"] == ["python"] and agent["hotpath"] is True
    assert agent["managed"] and agent["spawned_at"] and agent["current_task_id"] is None

    async def healthy():
        views = {a["agent_id"]: a for a in (await http.get("/fleet/agents")).json()}
        view = views.get(agent["agent_id"])
        return view if view and view["healthy"] and view["node"] and view["heartbeat_age_s"] is not None else None

    await eventually(healthy, timeout=60, what="the agent registered and heartbeating")
    assert [a["agent_id"] for a in (await http.get("/fleet/agents", params={"capability": "rust"})).json()] == []

    refused = await http.delete(f"/fleet/agents/{agent['agent_id']}")
    assert refused.status_code == 409 and "hotpath" in refused.json()["detail"]
    cleared = await http.patch(f"/fleet/agents/{agent['agent_id']}", json={"hotpath": False})
    assert cleared.status_code == 200 and cleared.json()["hotpath"] is False
    assert (await http.patch(f"/fleet/agents/{agent['agent_id']}", json={"hotpath": "maybe"})).status_code == 422

    second = second_spawned.json()
    figures = (await http.get("/fleet")).json()
    assert figures["cap"] == FLEET_CAP and figures["alive"] == 2 and figures["spawning"] == 0
    assert figures["warm_target"] == 0 and figures["warm"] == 0  # no warm pool configured here
    assert sum(node["alive"] for node in figures["nodes"]) == 2
    at_cap = await http.post("/fleet/agents", json={"kind": "coder"})
    assert at_cap.status_code == 409 and f"at most {FLEET_CAP}" in at_cap.json()["detail"]
    assert len((await http.get("/fleet/agents")).json()) == 2  # the refused spawn changed nothing

    for agent_id in (agent["agent_id"], second["agent_id"]):
        killed = await http.delete(f"/fleet/agents/{agent_id}", params={"force": "true"})
        assert killed.json() == {"agent_id": agent_id, "killed": True, "forced": True}
    assert (await http.get("/fleet")).json()["alive"] == 0
    assert (await http.delete("/fleet/agents/no-such-agent")).status_code == 404
    assert (await http.patch("/fleet/agents/no-such-agent", json={"hotpath": True})).status_code == 404
    assert (await http.post("/fleet/agents", json={"kind": "Not A Kind"})).status_code == 422


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def _start_long_run(http: httpx.AsyncClient, assistant: str = "orchestrator") -> tuple[str, str]:
    """A run whose command sleeps for 10 minutes; returns once it runs in the sandbox."""
    thread_id = (await http.post("/threads", json={})).json()["thread_id"]
    started = f"started-{uuid.uuid4().hex[:8]}"
    run = await http.post(f"/threads/{thread_id}/runs",
                          json={"assistant_id": assistant, "input": user(f"run `touch {started}; sleep 600`")})
    assert run.status_code == 200, run.text

    async def running():
        return (await http.get("/workspaces/default/files", params={"path": started})).status_code == 200

    await eventually(running, timeout=120, what="the command running in the default workspace")
    return thread_id, run.json()["run_id"]


async def _halt_of(http: httpx.AsyncClient, thread_id: str, run_id: str) -> dict:
    await asyncio.wait_for(http.get(f"/threads/{thread_id}/runs/{run_id}/join"), 90)  # far below the 600 s sleep
    state = (await http.get(f"/threads/{thread_id}/state")).json()
    return state["values"].get("halt") or {}


async def test_the_emergency_stop_halts_a_running_thread(http: httpx.AsyncClient):
    thread_id, run_id = await _start_long_run(http)
    stopped = await http.post(f"/threads/{thread_id}/stop")
    assert stopped.status_code == 200
    assert stopped.json() == {"thread_id": thread_id, "stopped": True, "running_runs": [run_id], "cancelled_runs": []}
    assert (await _halt_of(http, thread_id, run_id))["kind"] == "emergency_stop"


async def test_the_emergency_stop_cancels_a_run_hosted_outside_the_orchestrator(http: httpx.AsyncClient):
    # A run of the `agent` assistant is hosted by an agent actor, which has no emergency-stop
    # check of the orchestrator's kind: stopping the thread cancels it.
    thread_id, run_id = await _start_long_run(http, assistant="agent")
    stopped = await http.post(f"/threads/{thread_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["running_runs"] == [run_id] and stopped.json()["cancelled_runs"] == [run_id]
    await asyncio.wait_for(http.get(f"/threads/{thread_id}/runs/{run_id}/join"), 90)  # far below the 600 s sleep
    assert (await http.get(f"/threads/{thread_id}/runs/{run_id}")).json()["status"] == "interrupted"


async def test_the_system_stop_halts_every_running_thread(http: httpx.AsyncClient):
    thread_id, run_id = await _start_long_run(http)
    stopped = await http.post("/system/stop", json={"kill_agents": True})
    assert stopped.status_code == 200
    report = stopped.json()
    assert thread_id in report["threads_stopped"] and report["errors"] == []
    assert (await _halt_of(http, thread_id, run_id))["kind"] == "emergency_stop"
    assert (await http.post("/system/stop", json={"bogus": True})).status_code == 422


async def test_guardrails_are_validated_persisted_and_used_by_the_next_run(http: httpx.AsyncClient):
    current = (await http.get("/system/guardrails")).json()
    assert current["source"] == "settings" and current["max_iterations"] == 50
    assert (await http.patch("/system/guardrails", json={"max_iterations": 0})).status_code == 422
    assert (await http.patch("/system/guardrails", json={"max_hours": -1})).status_code == 422
    assert (await http.patch("/system/guardrails", json={"bogus": 1})).status_code == 422
    assert (await http.get("/system/guardrails")).json()["source"] == "settings"  # refused: nothing changed
    try:
        patched = await http.patch("/system/guardrails", json={"max_iterations": 2})
        assert patched.status_code == 200
        assert patched.json() | {"updated_at": None} == {
            "max_iterations": 2, "max_hours": current["max_hours"],
            "max_agents_per_thread": current["max_agents_per_thread"], "source": "persisted",
            "updated_by": None, "updated_at": None, **{name: None for name in BUDGETS}}
        # A new run of the already running orchestrator halts at the new limit: no restart.
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        await http.post(f"/threads/{thread_id}/runs/wait",
                        json={"assistant_id": "orchestrator", "input": user("keep running `echo tick`")})
        halt = (await http.get(f"/threads/{thread_id}/state")).json()["values"]["halt"]
        assert halt["kind"] == "guardrail" and "limit 2" in halt["reason"]
    finally:
        await http.patch("/system/guardrails", json={"max_iterations": current["max_iterations"]})


BUDGETS = ("budget_thread_tokens", "budget_thread_cost_usd", "budget_task_tokens", "budget_task_cost_usd")


async def test_budgets_are_validated_persisted_and_stop_the_next_run_and_task(http: httpx.AsyncClient):
    current = (await http.get("/system/guardrails")).json()
    assert {name: current[name] for name in BUDGETS} == dict.fromkeys(BUDGETS)  # the settings set none
    for bad in ({"budget_thread_tokens": 0}, {"budget_task_tokens": -5}, {"budget_thread_cost_usd": 0},
                {"budget_task_cost_usd": -1.5}, {"budget_thread_tokens": "many"}, {"budget_task_cost_usd": 1e12},
                {"budget_thread_tokens": 1.5}, {"budget_thread_tokens": 10**13}, {"budget_task_token": 5}):
        refused = await http.patch("/system/guardrails", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert next(iter(bad)) in refused.text, refused.text  # the reason names the field
    assert (await http.get("/system/guardrails")).json() == current  # refused: nothing changed
    try:
        patched = (await http.patch("/system/guardrails", json={"budget_thread_tokens": 1,
                                                                 "budget_task_cost_usd": 0.25})).json()
        assert (patched["budget_thread_tokens"], patched["budget_thread_cost_usd"], patched["budget_task_tokens"],
                patched["budget_task_cost_usd"]) == (1, None, None, 0.25)
        assert patched["max_iterations"] == current["max_iterations"]  # left out: unchanged
        # The next run of the running orchestrator stops at the new thread budget, with what it spent.
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        await http.post(f"/threads/{thread_id}/runs/wait",
                        json={"assistant_id": "orchestrator", "input": user("keep running `echo tick`")})
        halt = (await http.get(f"/threads/{thread_id}/state")).json()["values"]["halt"]
        assert halt["kind"] == "budget" and "thread's token budget" in halt["reason"], halt
        assert halt["spent"]["total_tokens"] >= 1 and halt["spent"]["model_calls"] == 1

        # null is no limit; a delegated task's agent stops at the task budget, and the task says why.
        patched = (await http.patch("/system/guardrails", json={"budget_thread_tokens": None,
                                                                 "budget_task_cost_usd": None,
                                                                 "budget_task_tokens": 1})).json()
        assert (patched["budget_thread_tokens"], patched["budget_task_cost_usd"], patched["budget_task_tokens"]) \
            == (None, None, 1)
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        await http.post(f"/threads/{thread_id}/runs/wait", json={
            "assistant_id": "orchestrator", "input": user("delegate to a coder agent: keep running `echo tick`")})

        async def folded():
            state = (await http.get(f"/threads/{thread_id}/state")).json()["values"]
            return [m["content"] for m in state.get("messages", []) if m.get("name") == "task_result"] or None

        (text,) = await eventually(folded, timeout=180, what="the task's result in its thread")
        # (the interrupt is quoted in the error, its apostrophe escaped)
        assert " failed by agent " in text and "reached this task" in text and "token budget: " in text, text
    finally:
        await http.patch("/system/guardrails", json=dict.fromkeys(BUDGETS))
    assert {name: (await http.get("/system/guardrails")).json()[name] for name in BUDGETS} == dict.fromkeys(BUDGETS)


async def test_system_status_reports_nodes_actors_postgres_docker_and_model(fabric, http: httpx.AsyncClient):
    status = (await http.get("/system/status")).json()
    assert status["nodes"] and all(n["resources"].get("CPU", 0) > 0 for n in status["nodes"] if n["alive"])
    actors = {a["name"]: a for a in status["actors"]}
    for name in ("orchestrator", "registry", "events", "fleet"):
        assert actors[fabric.settings.actor_name_prefix + name]["answers"] is True
    assert status["postgres"]["ok"] and "PostgreSQL" in status["postgres"]["version"]
    assert status["docker"] and all(d["ok"] and d["version"] for d in status["docker"])
    assert status["model"]["scripted"] is True


async def test_the_new_routes_are_counted_in_metrics(http: httpx.AsyncClient):
    await http.get("/fleet")
    await http.get("/workspaces/no-such/files", params={"path": "x"})
    text = (await http.get("/metrics", params={"actors": "false"})).text
    assert 'route="/fleet"' in text
    assert 'route="/workspaces/{workspace_id}/files"' in text and 'status="404"' in text


async def test_openapi_documents_every_operator_route_with_models(http: httpx.AsyncClient):
    spec = (await http.get("/openapi.json")).json()
    expected = {
        ("get", "/fleet/agents"): "Fleet", ("post", "/fleet/agents"): "Fleet",
        ("patch", "/fleet/agents/{agent_id}"): "Fleet", ("delete", "/fleet/agents/{agent_id}"): "Fleet",
        ("get", "/fleet"): "Fleet", ("get", "/events"): "Events", ("get", "/events/stream"): "Events",
        ("get", "/workspaces"): "Workspaces", ("post", "/workspaces"): "Workspaces",
        ("get", "/workspaces/{workspace_id}"): "Workspaces", ("delete", "/workspaces/{workspace_id}"): "Workspaces",
        ("post", "/workspaces/{workspace_id}/exec"): "Workspaces",
        ("post", "/workspaces/{workspace_id}/processes"): "Workspaces",
        ("get", "/workspaces/{workspace_id}/processes/{pid}"): "Workspaces",
        ("delete", "/workspaces/{workspace_id}/processes/{pid}"): "Workspaces",
        ("get", "/workspaces/{workspace_id}/files"): "Workspace files",
        ("delete", "/workspaces/{workspace_id}/files"): "Workspace files",
        ("get", "/workspaces/{workspace_id}/files/content"): "Workspace files",
        ("put", "/workspaces/{workspace_id}/files/content"): "Workspace files",
        ("get", "/workspaces/{workspace_id}/archive"): "Workspace files",
        ("put", "/workspaces/{workspace_id}/archive"): "Workspace files",
        ("get", "/workspaces/{workspace_id}/snapshots"): "Workspaces",
        ("post", "/workspaces/{workspace_id}/snapshots"): "Workspaces",
        ("get", "/workspaces/{workspace_id}/snapshots/{snapshot_id}/diff"): "Workspaces",
        ("post", "/workspaces/{workspace_id}/snapshots/{snapshot_id}/restore"): "Workspaces",
        ("post", "/threads/{thread_id}/stop"): "Control", ("post", "/system/stop"): "Control",
        ("get", "/system/status"): "Control", ("get", "/system/guardrails"): "Control",
        ("patch", "/system/guardrails"): "Control",
    }
    for (method, path), tag in expected.items():
        operation = spec["paths"][path][method]
        assert operation["tags"] == [tag], (method, path)
        assert "200" in operation["responses"] or "201" in operation["responses"]
    schemas = spec["components"]["schemas"]
    assert {"agent_id", "heartbeat_age_s", "hotpath", "current_task_id", "spawned_at"} <= set(
        schemas["AgentView"]["properties"])
    assert {"command", "cwd", "env", "timeout"} <= set(schemas["ExecBody"]["properties"])
    assert spec["paths"]["/fleet/agents"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "items"]["$ref"].endswith("/AgentView")
