"""A small real LangGraph orchestrator graph for the fabric's tests.

User messages: ``delegate[@capability]: <instruction>`` delegates through the DelegationClient found in
``config["configurable"]["delegation"]``; ``pause: <path>`` hangs in node ``pause`` the first
time (creating <path>), so a test can kill the orchestrator mid-run; ``ask: <question>`` interrupts until resumed; ``crash`` always raises; anything else is echoed.
Task results are answered with ``result <task id>: <output>``; a result whose output contains
``flaky`` makes the graph raise twice (per orchestrator process) before it succeeds.
"""

from __future__ import annotations

import asyncio
import operator
import os
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

FLAKY_FAILURES: dict[str, int] = {}


class State(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    task_results: Annotated[list[dict[str, Any]], operator.add]
    delegated: Annotated[list[str], operator.add]
    handled_messages: int
    handled_results: int
    think_runs: Annotated[int, operator.add]
    pause_path: str | None


async def think(state: State, config) -> dict[str, Any]:
    delegation = config["configurable"]["delegation"]
    thread_id = config["configurable"]["thread_id"]
    messages = state.get("messages", [])
    results = state.get("task_results", [])
    out: dict[str, Any] = {"messages": [], "delegated": [], "think_runs": 1, "pause_path": None}
    for result in results[state.get("handled_results", 0):]:
        if "flaky" in (result.get("output") or ""):
            failures = FLAKY_FAILURES.get(result["task_id"], 0)
            if failures < 2:
                FLAKY_FAILURES[result["task_id"]] = failures + 1
                raise RuntimeError(f"flaky graph failure {failures + 1}")
        out["messages"].append({"role": "assistant",
                                "content": f"result {result['task_id']}: {result.get('status')} {result.get('output')}"})
    user = [m for m in messages if m.get("role") == "user"]
    for message in user[state.get("handled_messages", 0):]:
        text = message["content"]
        if text.startswith("delegate"):
            head, _, instruction = text.partition(":")
            capability = head.partition("@")[2] or None
            info = await delegation.delegate(instruction.strip(), parent_thread_id=thread_id, capability=capability)
            out["delegated"].append(info.task_id)
            out["messages"].append({"role": "assistant", "content": f"delegated {info.task_id}"})
        elif text.startswith("ask:"):
            answer = interrupt(text[len("ask:"):].strip())  # the run stops; Command(resume=...) answers
            out["messages"].append({"role": "assistant", "content": f"answer: {answer}"})
        elif text == "crash":
            raise RuntimeError("this graph always fails on 'crash'")
        elif text.startswith("pause:"):
            out["pause_path"] = text[len("pause:"):].strip()
        else:
            out["messages"].append({"role": "assistant", "content": f"echo: {text}"})
    out["handled_messages"] = len(user)
    out["handled_results"] = len(results)
    return out


async def pause(state: State) -> dict[str, Any]:
    path = state["pause_path"]
    if not os.path.exists(path):
        with open(path, "w") as marker:
            marker.write(str(os.getpid()))
        await asyncio.Event().wait()  # hang until this process is killed
    return {"messages": [{"role": "assistant", "content": "resumed after pause"}], "pause_path": None}


def build_test_graph() -> StateGraph:
    graph = StateGraph(State)
    graph.add_node("think", think)
    graph.add_node("pause", pause)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", lambda s: "pause" if s.get("pause_path") else END, ["pause", END])
    graph.add_edge("pause", END)
    return graph
